"""``qemu:NAME``: the built-in micro VM, brought up on first use."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TargetError
from . import Target

USAGE = "qemu:NAME (the built-in micro VM)"


@dataclass
class QemuTarget(Target):
    quick_to_start = False

    def prepare(self, progress=None) -> None:
        """Boot the VM if it is not running (building its image the first time);
        instant when it runs. Points this target at its forwarded SSH port."""
        from ..vm import VM, VMError

        try:
            info = VM(self.name).up(progress)
        except VMError as exc:
            raise TargetError(f"{self.spec}: {exc}") from None
        self.point_at(info.as_json())


def qemu_target(spec: str, name: str) -> QemuTarget:
    from ..vm import VMError
    from ..vm.machine import check_name

    if not name:
        raise TargetError("'qemu:' needs a VM name, e.g. qemu:workshop")
    try:
        check_name(name)
    except VMError as exc:
        raise TargetError(str(exc)) from None
    return QemuTarget(spec=spec, kind="qemu", name=name, host="127.0.0.1", user="root")


def parse(spec: str) -> QemuTarget:
    return qemu_target(spec, spec.partition(":")[2])
