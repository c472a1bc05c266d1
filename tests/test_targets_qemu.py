"""qemu:NAME parsing (booting it is in test_vm.py)."""

from __future__ import annotations

import pytest

from workshop.targets import TargetError, parse_target


def test_qemu_target_names_a_vm_without_booting_it():
    target = parse_target("qemu:workshop")
    assert target.kind == "qemu" and target.name == "workshop"
    assert target.host == "127.0.0.1" and target.user == "root"


@pytest.mark.parametrize("spec", ["qemu:", "qemu:../x", "qemu:a b", "qemu:images"])
def test_bad_qemu_names_are_refused(spec):
    with pytest.raises(TargetError):
        parse_target(spec)


def test_unknown_target_kinds_list_the_known_ones():
    with pytest.raises(TargetError, match="qemu:NAME"):
        parse_target("lxc:foo")
