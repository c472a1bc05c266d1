"""Fresh VMs restored from one snapshot, for real: isolated from each other,
each with its own host key, clock and randomness, and nothing left afterwards.

The tests' VMs are small (512 MB, one CPU), so their snapshot is their own (a
snapshot is keyed by the machine's size) and damaging it at the end touches no
one else's.  The image comes from ``$WORKSHOP_VM_CACHE`` when set (see test_vm.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workshop.paths import known_hosts_file
from workshop.shell.ssh import Endpoint, SSHConnection
from workshop.targets import parse_target
from workshop.targets.qemu import fresh_qemu
from workshop.vm import VM, build_image
from workshop.vm.clone import fresh_vm, start_fresh, sweep_orphans
from workshop.vm.machine import _pid_alive, kvm_usable
from workshop.vm.snapshot import Snapshot, ensure_snapshot, snapshot_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

SMALL = {"WORKSHOP_VM_MEMORY": "512", "WORKSHOP_VM_CPUS": "1"}


@pytest.fixture(scope="module")
def small_vms():
    from test_vm import _require_tools

    _require_tools()
    old = {name: os.environ.get(name) for name in SMALL}
    os.environ.update(SMALL)
    image, _ = build_image()
    yield image
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _accel() -> str:
    return "kvm" if kvm_usable()[0] else "tcg"


def _snapshot(image) -> Snapshot:
    return snapshot_for(image, _accel(), 512, 1)


def _run(vm: VM, command: str) -> str:
    state = vm.state()
    conn = SSHConnection(Endpoint("127.0.0.1", state["port"], "root", state["private_key"]), pin="strict")
    try:
        done = conn.exec(command)
    finally:
        conn.close()
    assert done.ok, done.stderr
    return done.stdout


def _pinned(port: int) -> list[str]:
    return [line.split(None, 1)[1] for line in known_hosts_file().read_text().splitlines()
            if line.startswith(f"[127.0.0.1]:{port} ")]


@pytest.fixture(scope="module")
def two_clones(small_vms):
    """Two fresh VMs restored at the same time from one snapshot."""
    said: dict[str, list[str]] = {"a": [], "b": []}
    vms: dict[str, VM] = {}
    errors: list[BaseException] = []
    _snapshot(small_vms)  # (saved by whichever clone comes first, under a lock)

    def start(which: str) -> None:
        try:
            vms[which] = start_fresh("snaptest", said[which].append)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(which,)) for which in said]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        yield vms["a"], vms["b"], said
    finally:
        for vm in vms.values():
            vm.destroy()


def test_two_clones_at_once_are_both_reachable_from_the_snapshot(two_clones, small_vms):
    a, b, said = two_clones
    assert a.running and b.running and a.name != b.name
    assert a.state()["port"] != b.state()["port"]
    for vm, messages in ((a, said["a"]), (b, said["b"])):
        assert any("restored from the snapshot" in m for m in messages), messages
        assert vm.state()["snapshot"] == _snapshot(small_vms).dir.name
        assert _run(vm, "echo $((6 * 7))").strip() == "42"


def test_a_file_written_in_one_clone_is_not_seen_by_the_other(two_clones):
    a, b, _ = two_clones
    _run(a, "echo mine > /root/only-in-a && sync")
    assert _run(a, "cat /root/only-in-a").strip() == "mine"
    assert _run(b, "cat /root/only-in-a 2>/dev/null || echo absent").strip() == "absent"
    # each writes to its own overlay; the snapshot's files stay read-only
    snap = Snapshot(Path(a.state()["image"]).parent / "snapshots" / a.state()["snapshot"])
    for vm in (a, b):
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(vm.disk)],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["backing-filename"] == str(snap.disk)
    assert snap.memory.stat().st_mode & 0o222 == 0 and snap.disk.stat().st_mode & 0o222 == 0


def test_each_clone_has_its_own_pinned_host_key(two_clones, small_vms):
    a, b, _ = two_clones
    image_key = small_vms.host_key_line()[1]
    offered = {}
    for vm in (a, b):
        pins = _pinned(vm.state()["port"])
        assert len(pins) == 1 and image_key not in pins[0]
        # the guest offers exactly the pinned key (a strict connection would refuse another)
        offered[vm.name] = _run(vm, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub").strip()
        assert offered[vm.name] == pins[0]
    assert offered[a.name] != offered[b.name]


def test_clones_have_the_hosts_clock_and_their_own_randomness(two_clones):
    a, b, _ = two_clones
    probe = "cat /proc/sys/kernel/random/boot_id /etc/machine-id; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s"
    seen = []
    for vm in (a, b):
        boot_id, machine_id, random, clock = _run(vm, probe).split()
        assert abs(int(clock) - time.time()) < 30  # the snapshot may be hours old
        seen.append((boot_id, machine_id, random))
    for first, second in zip(*seen, strict=True):
        assert first != second
    # and each kernel keeps taking randomness from its own qemu's virtio-rng
    assert _run(a, "cat /sys/class/misc/hw_random/rng_current").strip() == "virtio_rng.0"


def test_a_kernel_runs_cells_on_a_fresh_vm(small_vms, installed_kernelspec):
    from conftest import kernel_env
    from harness import KernelHarness

    with fresh_qemu(parse_target("qemu:snapkernel")) as spec:
        kernel = KernelHarness(kernel_env(spec))
        try:
            reply = kernel.run("cat /etc/hostname; id -u", timeout=300)
        finally:
            kernel.shutdown()
    assert reply.status == "ok", reply.stderr
    assert reply.stdout.split() == ["workshop", "0"]


def test_the_snapshot_is_saved_once_and_reused(small_vms):
    snap = _snapshot(small_vms)
    with fresh_vm("snapreuse"):
        pass
    assert snap.problem() is None
    saved = (snap.dir / "snapshot.json").stat().st_mtime_ns
    said: list[str] = []
    with fresh_vm("snapreuse", said.append) as vm:
        assert vm.running
    assert not any("saving a snapshot" in m for m in said), said
    assert (snap.dir / "snapshot.json").stat().st_mtime_ns == saved


def test_nothing_is_left_after_a_fresh_vm_is_closed(small_vms):
    with fresh_vm("snapgone") as vm:
        pid, port = vm.pid(), vm.state()["port"]
        assert pid and vm.disk.exists() and _pinned(port)
    assert not _pid_alive(pid)
    assert not vm.dir.exists()  # overlay, FIFOs, QMP socket, state
    assert not _pinned(port)


def _fresh_vm_of_a_killed_owner(base: str) -> tuple[str, str]:
    """A fresh VM started by another process, which is then killed with
    SIGKILL: the VM's name and qemu pid."""
    script = (
        "import time\n"
        "from workshop.vm.clone import start_fresh\n"
        f"vm = start_fresh({base!r})\n"
        "print(vm.name, vm.pid(), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        name, pid = owner.stdout.readline().split()
    finally:
        owner.kill()
        owner.wait()
    return name, pid


def test_a_fresh_vm_whose_owner_was_killed_is_removed_by_the_next(small_vms):
    name, pid = _fresh_vm_of_a_killed_owner("snaporphan")
    orphan = VM(name)
    assert orphan.running and orphan.dir.exists()
    assert name in sweep_orphans()
    assert not _pid_alive(int(pid)) and not orphan.dir.exists()


def test_doctor_lists_a_dead_graders_fresh_vm_and_vm_sweep_removes_it(small_vms):
    """What an instructor sees after a grader was killed: `workshop doctor` names
    the VM, `workshop vm sweep` removes it, and doctor is clean again."""
    name, pid = _fresh_vm_of_a_killed_owner("snapdoctor")
    workshop = [sys.executable, "-m", "workshop"]
    wide = dict(os.environ, COLUMNS="300")
    doctor = subprocess.run([*workshop, "doctor"], capture_output=True, text=True, env=wide, timeout=120)
    line = next(line for line in doctor.stdout.splitlines() if "fresh VMs of dead graders" in line)
    assert name in line and "workshop vm sweep" in line
    sweep = subprocess.run([*workshop, "vm", "sweep"], capture_output=True, text=True, timeout=120)
    assert sweep.returncode == 0 and f"removed '{name}'" in sweep.stdout
    assert not _pid_alive(int(pid)) and not VM(name).dir.exists()
    doctor = subprocess.run([*workshop, "doctor"], capture_output=True, text=True, env=wide, timeout=120)
    line = next(line for line in doctor.stdout.splitlines() if "fresh VMs of dead graders" in line)
    assert name not in line and "none" in line


def test_a_snapshot_of_the_wrong_size_is_not_restored(tmp_path):
    snap = Snapshot(tmp_path)
    (tmp_path / "memory").write_bytes(b"QEVM\x00\x00\x00\x03" + b"\0" * 100)
    (tmp_path / "disk.qcow2").write_bytes(b"\0" * 10)
    (tmp_path / "snapshot.json").write_text(json.dumps({"memory_bytes": 500, "disk_bytes": 10}))
    assert snap.problem() == "memory has 108 bytes, not the 500 it was saved with"
    (tmp_path / "snapshot.json").write_text(json.dumps({"memory_bytes": 108, "disk_bytes": 10}))
    assert snap.problem() is None


def test_a_damaged_snapshot_falls_back_to_a_cold_boot(small_vms):
    # last: it spoils this module's own snapshot (the next run saves it again)
    snap = ensure_snapshot(small_vms, _accel(), 512, 1, print)
    with open(snap.memory, "r+b") as f:  # the device state at the end, same size
        f.seek(-65536, os.SEEK_END)
        f.write(os.urandom(65536))
    said: list[str] = []
    with fresh_vm("snapdamage", said.append) as vm:
        assert _run(vm, "echo up").strip() == "up"
        assert vm.state().get("snapshot") is None  # booted from scratch
        # with a host key of its own all the same
        pins = _pinned(vm.state()["port"])
        assert len(pins) == 1 and small_vms.host_key_line()[1] not in pins[0]
    assert any("cannot be restored" in m and "from scratch" in m for m in said), said
    assert not snap.dir.exists()  # discarded: saved again next time


def test_saving_a_snapshot_removes_the_stale_ones_of_that_machine(tmp_path, monkeypatch):
    from workshop.vm import snapshot

    monkeypatch.setenv("WORKSHOP_VM_CACHE", str(tmp_path))
    (tmp_path / "img").mkdir()
    made = {}
    for name, image, memory in (("new", "img", 512), ("old", "img", 512), ("bigger", "img", 1024), ("gone", "x", 512)):
        made[name] = Snapshot(snapshot.snapshots_dir() / name)
        made[name].dir.mkdir()
        (made[name].dir / "snapshot.json").write_text(json.dumps(
            {"image": image, "accel": "tcg", "memory_mb": memory, "cpus": 1}))
    snapshot._prune(made["new"])
    assert sorted(p.name for p in snapshot.snapshots_dir().iterdir()) == ["bigger", "new"]
