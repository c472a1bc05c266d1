"""A kernel killed with kill -9 in the middle of its work, along with the
warden that would end its sessions, leaves mounts, cgroups, processes and
state directories on its target: `workshop doctor` reports them and the next
kernel on that target removes them."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import KernelHarness, clean_env

pytestmark = pytest.mark.slow


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def test_a_killed_kernels_leftovers_are_reported_and_removed_by_the_next(installed_kernelspec, tmp_path):
    env = clean_env(WORKSHOP_TARGET="local")
    tag = random.randint(1_000_000, 9_999_999)
    rootfs = tmp_path / "rootfs"
    first = KernelHarness(env)
    nonce = "none-yet"
    try:
        assert first.run(f"%rootfs {rootfs}").status == "ok"
        kept = first.run(f"%%overlay {rootfs} --name keep\ntouch /inside")
        assert kept.status == "ok", kept.stderr
        grouped = first.run(f"%%cgroup --name ws-dead-{tag}\nsetsid sleep {tag}1 > /dev/null 2>&1 &")
        assert grouped.status == "ok", grouped.stderr
        cgroups = grouped.record["cgroup"]["paths"]
        assert first.run(f"sleep {tag}2 > /dev/null 2>&1 & echo started").stdout == "started\n"
        nonce = first.run("echo $WORKSHOP_SESSION").stdout.strip()
        # killed mid-cell: the shell outlives the kernel, so only a sweep that
        # knows wardens (not an older kernel's, on a shared machine) removes this

        first.run_in_background(f"sleep {tag}3", timeout=60)
        deadline = time.monotonic() + 20
        while not _running(f"^sleep {tag}3$") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        # its warden too, which would otherwise remove all this at once (test_faults_kernel_death.py)
        subprocess.run(["pkill", "-KILL", "-f", f"workshop-warden .*{nonce}"])
        first.kill()
    time.sleep(0.5)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if "/keep/merged" in line]
    assert mounts, "the named snapshot stays mounted after the kernel died"
    assert all(Path(p).is_dir() for p in cgroups)
    assert _running(f"^sleep {tag}2$") and _running(f"^sleep {tag}3$")

    doctor = subprocess.run([sys.executable, "-m", "workshop", "doctor", "--target", "local"],
                            capture_output=True, text=True, env=dict(env, COLUMNS="400"), timeout=120)
    assert "leftovers of dead" in doctor.stdout and "died left" in doctor.stdout, doctor.stdout

    second = KernelHarness(env)
    try:
        result = second.run("echo hello")
        assert result.stdout == "hello\n"
        assert "that died left" in result.stderr, result.stderr
        time.sleep(0.3)
        now = Path("/proc/mounts").read_text()
        assert all(m not in now for m in mounts), "the dead kernel's snapshot is still mounted"
        assert not any(Path(p).exists() for p in cgroups), "the dead kernel's cgroup is still there"
        assert not _running(f"^sleep {tag}[123]$"), "the dead kernel's processes still run"
        again = second.run("%cleanup")
        # nothing twice (other kernels on a shared machine may have died meanwhile)
        mine = [line for line in again.stdout.splitlines() if str(tag) in line or "/keep" in line]
        assert not mine, mine
    finally:
        second.shutdown()


def test_a_check_running_when_its_kernel_dies_is_removed_by_the_next(installed_kernelspec):
    env = clean_env(WORKSHOP_TARGET="local")
    tag = random.randint(1_000_000, 9_999_999)
    first = KernelHarness(env)
    first.run_in_background(f"true\n%%check\nsleep {tag}", timeout=30)
    deadline = time.monotonic() + 20
    while not _running(f"^sleep {tag}$") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(f"^sleep {tag}$"), "the check did not start"
    first.kill()
    time.sleep(0.5)
    second = KernelHarness(env)
    try:
        assert second.run("echo hello").stdout == "hello\n"
        time.sleep(0.3)
        assert not _running(f"^sleep {tag}$"), "the dead kernel's check still runs"
    finally:
        second.shutdown()


def _dead_state_dir(name: str, who: str, tmp_path: Path) -> Path:
    """A state directory as a killed kernel of user ``who`` leaves it: its owner gone, one cleanup."""
    state = Path(f"/tmp/.workshop-{name}")
    (state / "cleanups").mkdir(parents=True)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (state / "owner").write_text(f"{2**22 + 7} 1 {boot}\n")  # a pid above pid_max: long gone
    (state / "user").write_text(f"{who}\n")
    (state / "cleanups" / "000000").write_text(f"# a mount of {name}\ntouch {tmp_path}/{name}-cleaned\n")
    return state


def test_only_this_users_dead_kernels_are_cleaned_and_reported(installed_kernelspec, tmp_path):
    """A shared machine or VM: another user's dead kernel is theirs to hear about, not a student's first cell."""
    tag = random.randint(1_000_000, 9_999_999)
    mine, theirs = Path(f"/tmp/.workshop-mine{tag}"), Path(f"/tmp/.workshop-theirs{tag}")
    try:
        kernel = KernelHarness(clean_env(WORKSHOP_TARGET="local"))
        try:
            # made once the kernel is up: its first cell starts the shell, which sweeps
            _dead_state_dir(f"mine{tag}", str(os.getuid()), tmp_path)
            _dead_state_dir(f"theirs{tag}", "4242", tmp_path)
            result = kernel.run("echo hello")
            assert result.stdout == "hello\n"
            assert f"a mount of mine{tag}" in result.stderr, result.stderr
            assert f"theirs{tag}" not in result.stderr + result.stdout
        finally:
            kernel.shutdown()
        assert (tmp_path / f"mine{tag}-cleaned").exists() and not mine.exists()
        assert not (tmp_path / f"theirs{tag}-cleaned").exists() and theirs.exists()  # left to its user
    finally:
        subprocess.run(["rm", "-rf", str(mine), str(theirs)], check=True)
