"""A VM that goes away under a live kernel: killed (idle or mid-cell) or
stopped with `workshop vm down`.  The next cell boots it again, reconnects to
it on its new port with its own pinned host key, says the shell's state was
lost, and runs.  Real qemu (TCG here), cold boots: slow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import kernel_env
from harness import KernelHarness

from workshop.paths import known_hosts_file
from workshop.vm import VM, build_image, image_for

NAME = "wsfault"
LOST = "cwd, variables and functions from the old shell are gone"

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]


def _need_image() -> None:
    """The VM image, built once when missing (as test_vm.py does; root only)."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs qemu-system-x86_64")
    if not image_for().built:
        if os.geteuid() != 0:
            pytest.skip("building the VM image needs root (or a built image in $WORKSHOP_VM_CACHE)")
        build_image()


@pytest.fixture
def vm_kernel(installed_kernelspec):
    _need_image()
    vm = VM(NAME)
    kernel = KernelHarness(kernel_env(f"qemu:{NAME}"))
    try:
        yield kernel, vm
    finally:
        kernel.shutdown()
        if vm.dir.exists():
            vm.destroy()
        assert not vm.running


def _wait_stopped(pid: int) -> None:
    """Until SIGSTOP has taken effect: kill() returns before every thread of qemu
    has stopped, and on a busy machine the next cell could start meanwhile and
    find a VM that freezes under it, mid-cell (a different case, tested below)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in ("T", "t"):
                return
        time.sleep(0.05)
    raise AssertionError(f"qemu {pid} did not stop within 30 s of SIGSTOP")


def _kill_qemu(vm: VM) -> int:
    pid = vm.pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while vm.running and time.monotonic() < deadline:
        time.sleep(0.1)
    return pid


def _reconnects(kernel: KernelHarness, vm: VM, old_port: int, said_before: bool = False) -> None:
    """The next cell runs on the VM as it now is; it says the shell's state was lost,
    unless the cell that saw the VM go (``said_before``) said so already."""
    result = kernel.run("echo back on $(hostname); echo ${KEPT:-unset}", timeout=600)
    assert result.status == "ok", (result.stdout, result.stderr, result.errors)
    assert result.stdout == "back on workshop\nunset\n"
    assert result.stderr.count(LOST) == (0 if said_before else 1), result.stderr
    port = vm.state()["port"]
    assert port != old_port
    assert result.record["target"]["port"] == port
    # the key it logged in with is the VM's own, pinned for the new port
    assert f"[127.0.0.1]:{port} " in known_hosts_file().read_text()
    again = kernel.run("echo steady")
    assert again.stdout == "steady\n" and LOST not in again.stderr


def test_a_vm_killed_stopped_or_killed_mid_cell_is_found_again(vm_kernel):
    kernel, vm = vm_kernel
    first = kernel.run("export KEPT=yes; echo up", timeout=900)
    assert first.status == "ok", first.stderr
    port = vm.state()["port"]

    # killed while idle
    _kill_qemu(vm)
    _reconnects(kernel, vm, port)
    port = vm.state()["port"]

    # stopped from outside
    done = subprocess.run([sys.executable, "-m", "workshop", "vm", "down", NAME], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    _reconnects(kernel, vm, port)
    port = vm.state()["port"]

    # killed while a cell runs: that cell ends saying so
    assert kernel.run("export KEPT=yes").status == "ok"
    threading.Timer(3, _kill_qemu, (vm,)).start()
    started = time.monotonic()
    cut = kernel.run("sleep 600", timeout=120)
    assert time.monotonic() - started < 60
    assert cut.status == "error"
    assert "lost" in cut.stderr or any("lost" in e["evalue"] for e in cut.errors), (cut.stderr, cut.errors)
    assert "the next cell starts a new shell (cwd, variables and functions are lost)" in cut.stderr, cut.stderr
    _reconnects(kernel, vm, port, said_before=True)


def test_a_frozen_vm_ends_the_cell_within_seconds_and_is_used_again_once_it_runs(vm_kernel):
    kernel, vm = vm_kernel
    assert kernel.run("export KEPT=yes", timeout=900).status == "ok"
    pid = vm.pid()
    assert pid
    try:
        # frozen between cells: the next cell says so at once, and the shell is kept
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid)
        started = time.monotonic()
        idle = kernel.run("echo hi", timeout=60)
        assert time.monotonic() - started < 5
        assert idle.status == "error" and str(pid) in " ".join(e["evalue"] for e in idle.errors), idle.errors
        os.kill(pid, signal.SIGCONT)
        kept = kernel.run("echo $KEPT", timeout=60)
        assert kept.stdout == "yes\n" and LOST not in kept.stderr, (kept.stdout, kept.stderr)

        # frozen while a cell runs: the cell ends, saying why
        threading.Timer(2, os.kill, (pid, signal.SIGSTOP)).start()
        started = time.monotonic()
        cut = kernel.run("sleep 600", timeout=120)
        assert time.monotonic() - started < 2 + 10, time.monotonic() - started
        assert cut.status == "error"
        said = cut.stderr + " ".join(e["evalue"] for e in cut.errors)
        assert "stopped" in said and str(pid) in said, said
        assert "the next cell starts a new shell (cwd, variables and functions are lost)" in cut.stderr, cut.stderr

        # still frozen: the next cell says so at once
        started = time.monotonic()
        again = kernel.run("echo hi", timeout=60)
        assert time.monotonic() - started < 10
        assert again.status == "error" and "stopped" in " ".join(e["evalue"] for e in again.errors), again.errors
    finally:
        os.kill(pid, signal.SIGCONT)
    back = kernel.run("echo ${KEPT:-unset}", timeout=120)
    assert back.status == "ok", (back.stderr, back.errors)
    assert back.stdout == "unset\n" and LOST not in back.stderr  # the cut cell said it


def test_an_interrupt_ends_a_cell_on_a_frozen_vm_within_the_promised_time(vm_kernel):
    kernel, vm = vm_kernel
    assert kernel.run("true", timeout=900).status == "ok"
    pid = vm.pid()
    assert pid
    try:
        os.kill(pid, signal.SIGSTOP)
        threading.Timer(0.5, kernel.interrupt).start()
        started = time.monotonic()
        cut = kernel.run("sleep 600", timeout=120)
        assert time.monotonic() - started < 0.5 + 6, time.monotonic() - started
        assert cut.status == "error"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert kernel.run("echo fine", timeout=120).stdout == "fine\n"


def test_a_kernel_killed_mid_cell_leaves_nothing_in_its_vm(installed_kernelspec):
    """The warden in the VM notices the connection closing and ends the session."""
    _need_image()
    from workshop.shell.ssh import Endpoint, SSHConnection

    vm = VM(NAME)
    kernel = KernelHarness(kernel_env(f"qemu:{NAME}"))
    conn = None
    try:
        assert kernel.run("%rootfs /root/rootfs", timeout=900).status == "ok"
        info = vm.ssh_info()
        conn = SSHConnection(Endpoint(info.hostname, info.port, info.user, info.private_key), pin="strict")

        def inside(command: str) -> str:
            return conn.exec(command, timeout=30).stdout

        tag = 4242421
        kernel.run_in_background(f"%%cgroup --pids 20\n%%overlay /root/rootfs\nsleep {tag}", timeout=120)
        deadline = time.monotonic() + 60
        while not inside(f"pgrep -f '^sleep {tag}$'") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert inside("ls -d /tmp/.workshop-*; grep -c ' overlay ' /proc/mounts").split()[-1] != "0"
        os.kill(kernel.km.provisioner.process.pid, signal.SIGKILL)
        kernel.km.provisioner.process.wait(10)
        check = (f"pgrep -f '^sleep {tag}$'; ls -d /tmp/.workshop-* 2>/dev/null; grep ' overlay ' /proc/mounts; "
                 "find /sys/fs/cgroup -name 'workshop-*' -type d")
        deadline = time.monotonic() + 30
        while (left := inside(check).strip()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"left in the VM after the kernel died: {left}"
    finally:
        if conn is not None:
            conn.close()
        try:
            kernel.kc.stop_channels()
        except Exception:
            pass
        if kernel.km.provisioner is not None and kernel.km.provisioner.process.poll() is None:
            kernel.shutdown()
        if vm.dir.exists():
            vm.destroy()
        assert not vm.running
