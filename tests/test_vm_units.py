"""Parts of the micro VM that need no qemu: names, the initramfs, host-key pins, a KVM failure remembered."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time

import pytest

from workshop.paths import known_hosts_file
from workshop.vm import VM, VMError
from workshop.vm.image import Image
from workshop.vm.initrd import _Cpio, module_closure
from workshop.vm.machine import (
    KVM_RETRY_AFTER,
    _kvm_broken_file,
    _unpin_port,
    check_name,
    kvm_device,
    kvm_failed_recently,
    kvm_usable,
    pin_host_key,
)


@pytest.mark.parametrize("name", ["workshop", "vm-1", "a.b_c"])
def test_good_names(name):
    check_name(name)


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-x", "images", "a b"])
def test_bad_names(name):
    with pytest.raises(VMError):
        check_name(name)


def test_modules_load_after_their_dependencies(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
        "kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio.ko:\n"
        "kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
    )
    order = [m.rsplit("/", 1)[1] for m in module_closure(tmp_path, ("virtio_pci", "virtio_blk", "builtin_one"))]
    assert order == ["virtio.ko", "virtio_ring.ko", "virtio_pci_legacy_dev.ko", "virtio_pci.ko", "virtio_blk.ko"]


def test_a_module_file_named_with_dashes_is_found_by_its_modprobe_name(tmp_path):
    """Debian's kernel ships virtio-rng.ko; the initramfs asks for virtio_rng."""
    (tmp_path / "modules.dep").write_text("kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/char/rng-core.ko\n"
                                          "kernel/drivers/char/rng-core.ko:\n")
    order = [m.rsplit("/", 1)[1] for m in module_closure(tmp_path, ("virtio_rng",))]
    assert order == ["rng-core.ko", "virtio-rng.ko"]


def test_the_initramfs_is_a_valid_newc_archive(tmp_path):
    archive = _Cpio()
    archive.dir("bin")
    archive.file("init", b"#!/bin/busybox sh\n", 0o755)
    archive.chardev("dev/console", 5, 1)
    data = archive.finish()
    assert len(data) % 512 == 0
    assert shutil.which("cpio"), "cpio is missing: bash scripts/setup --test installs it"
    listing = subprocess.run(["cpio", "-itv"], input=data, capture_output=True, check=True).stdout.decode()
    assert "init" in listing and "dev/console" in listing and "bin" in listing
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--no-absolute-filenames", "init"], input=data, cwd=out, check=True,
                   capture_output=True)
    assert (out / "init").read_bytes() == b"#!/bin/busybox sh\n"
    assert stat.S_IMODE((out / "init").stat().st_mode) == 0o755


def test_host_key_is_pinned_for_the_port_and_unpinned(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ssh_host_ed25519_key")],
                   check=True)
    image = Image(tmp_path)
    kind, b64 = image.host_key_line()
    pin_host_key(40222, kind, b64)
    pin_host_key(40222, kind, b64)  # idempotent: one entry
    lines = [line for line in known_hosts_file().read_text().splitlines() if line.startswith("[127.0.0.1]:40222 ")]
    assert lines == [f"[127.0.0.1]:40222 {kind} {b64}"]
    _unpin_port(40222)
    assert "[127.0.0.1]:40222 " not in known_hosts_file().read_text()


def test_ssh_info_of_a_stopped_vm_says_how_to_start_it():
    with pytest.raises(VMError, match="workshop vm up nothere"):
        VM("nothere").ssh_info()


def test_down_of_an_unknown_vm_is_an_error():
    with pytest.raises(VMError, match="vm list"):
        VM("nothere").down()


@pytest.mark.slow
def test_a_kvm_failure_keeps_vms_on_tcg_for_a_day_then_kvm_is_tried_again(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSHOP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WORKSHOP_VM_ACCEL", raising=False)
    assert kvm_failed_recently() is None
    marker = _kvm_broken_file()
    marker.write_text("no SSH within 20 s\n")  # what start_cold writes after a KVM boot failed
    failed = time.time() - 2 * 3600
    os.utime(marker, (failed, failed))
    note = kvm_failed_recently()
    retry = time.strftime("%Y-%m-%d %H:%M", time.localtime(failed + KVM_RETRY_AFTER))
    assert note == (f"a KVM guest failed here 2 h ago: no SSH within 20 s; KVM is tried again after {retry}, "
                    f"or at once if you remove {marker}")
    device, why = kvm_device()
    assert kvm_usable() == ((False, note) if device else (False, why))  # no KVM: say why, the failure or the device
    monkeypatch.setenv("WORKSHOP_VM_ACCEL", "kvm")  # asked for by name, KVM is tried anyway
    assert kvm_usable() == (device, why)
    monkeypatch.delenv("WORKSHOP_VM_ACCEL")
    long_ago = time.time() - KVM_RETRY_AFTER - 60
    os.utime(marker, (long_ago, long_ago))
    assert kvm_failed_recently() is None and not marker.exists()  # forgotten: the next boot tries KVM
    assert kvm_usable() == (device, why)
