"""A kernel killed with kill -9 in the middle of a cell: what the cell started
ends and what its magics made is undone, at once, with no other kernel; and
when even that could not run, `workshop doctor`, a new kernel and %cleanup
see the dead kernel's leftovers while its orphaned command still runs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import KernelHarness, clean_env

pytestmark = pytest.mark.slow

ENV = clean_env(WORKSHOP_TARGET="local")


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _wait_for(pattern: str, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _pids(pattern)
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{pattern} never started")


class Made:
    """What a running cell's command has on this machine: found from its process."""

    def __init__(self, pid: int):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        nonce = next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"WORKSHOP_SESSION="))
        self.state_dir = Path(f"/tmp/.workshop-{nonce}")
        self.nonce = nonce
        self.shell = int((self.state_dir / "owner").read_text().split()[0])
        self.root = os.readlink(f"/proc/{pid}/root")
        self.cgroups = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
        mine = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
        self.cgroups = [c for c in self.cgroups if c not in mine]

    def mounted(self) -> bool:
        return self.root != "/" and any(f" {self.root} " in line for line in Path("/proc/mounts").read_text().splitlines())

    def cgroup_dirs(self) -> list[Path]:
        """The cgroup directories the command was in that this test is not (v1: per controller)."""
        found = []
        for _, controllers, path in self.cgroups:
            for controller in controllers.split(",") if controllers else ["unified", ""]:
                where = Path("/sys/fs/cgroup", controller.removeprefix("name="), path.lstrip("/"))
                if where.is_dir() and path != "/":
                    found.append(where)
        return found

    def left(self, pattern: str) -> list[str]:
        what = []
        if _pids(pattern):
            what.append("the command runs")
        if _pids(f"workshop-warden .*{self.nonce}"):
            what.append("the warden runs")
        if Path(f"/proc/{self.shell}").exists() and Path(f"/proc/{self.shell}/stat").read_text().split()[2] != "Z":
            what.append("the shell runs")
        if self.state_dir.exists():
            what.append("the state directory")
        if self.mounted():
            what.append(f"the mount {self.root}")
        if self.cgroup_dirs():
            what.append(f"the cgroups {self.cgroup_dirs()}")
        return what


def _removed(made: Made, pattern: str, seconds: float = 10) -> list[str]:
    deadline = time.monotonic() + seconds
    while made.left(pattern) and time.monotonic() < deadline:
        time.sleep(0.2)
    return made.left(pattern)


def _start_cell(kernel: KernelHarness, code: str, pattern: str) -> Made:
    cell = kernel.run_in_background(code)
    made = Made(_wait_for(pattern))
    made.cell = cell
    return made


def _leave_nothing(pattern: str) -> None:
    """Whatever happened: kill what the test started, then let a kernel remove
    what dead kernels left (its first cell sweeps)."""
    for pid in _pids(pattern):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kernel = KernelHarness(ENV)
    try:
        kernel.run("true")
    finally:
        kernel.shutdown()


@pytest.fixture
def rootfs(installed_kernelspec, tmp_path):
    kernel = KernelHarness(ENV)
    try:
        assert kernel.run(f"%rootfs {tmp_path}/rootfs").status == "ok"
    finally:
        kernel.shutdown()
    return tmp_path / "rootfs"


MAGICS = {
    "overlay": "%%overlay {root}\nsleep {tag}",
    "overlay-named": "%%overlay {root} --name kept{tag}\nsleep {tag}",
    "cgroup": "%%cgroup --memory 100M --pids 20\nsleep {tag}",
    "cgroup-named": "%%cgroup --name ws-kept-{tag}\nsleep {tag}",
    "stacked": "%%cgroup --pids 20\n%%unshare -fmpu --mount-proc\n%%overlay {root}\nsleep {tag}",
}


@pytest.mark.parametrize("magic", list(MAGICS))
def test_a_kernel_killed_mid_cell_leaves_nothing(rootfs, magic):
    _killed_mid_cell_leaves_nothing(ENV, MAGICS[magic].format(root=rootfs, tag="{tag}"))


@pytest.mark.parametrize("magic", ["overlay", "cgroup"])
def test_over_ssh_a_kernel_killed_mid_cell_leaves_nothing(rootfs, sshd, magic):
    """The connection closing is what the warden on the target notices."""
    _killed_mid_cell_leaves_nothing(dict(ENV, WORKSHOP_TARGET=sshd.url),
                                    MAGICS[magic].format(root=rootfs, tag="{tag}"))


def _killed_mid_cell_leaves_nothing(env: dict[str, str], code: str) -> None:
    tag = random.randint(1_000_000, 9_999_999)
    pattern = f"^sleep {tag}$"
    kernel = KernelHarness(env)
    try:
        made = _start_cell(kernel, code.format(tag=tag), pattern)
        kernel.kill()
        left = _removed(made, pattern)
        assert not left, f"after the kernel died: {left}"
    finally:
        kernel.kill()
        _leave_nothing(pattern)


@pytest.mark.parametrize("finder", ["doctor", "new kernel", "%cleanup"])
def test_an_orphan_of_a_dead_kernel_is_seen_and_removed_while_it_runs(rootfs, finder):
    """The kernel and what would have ended its cell (its warden) both die: the
    orphaned command keeps the mount and the cgroup, and is still found."""
    tag = random.randint(1_000_000, 9_999_999)
    pattern = f"^sleep {tag}$"
    kernel = KernelHarness(ENV)
    try:
        made = _start_cell(kernel, f"%%cgroup --pids 20\n%%overlay {rootfs}\nsleep {tag}", pattern)
        for pid in _pids(f"workshop-warden .*{made.nonce}"):
            os.kill(pid, signal.SIGKILL)
        kernel.kill()
        time.sleep(1)
        assert _pids(pattern) and made.mounted() and made.cgroup_dirs(), "the orphan should still run here"

        if finder == "doctor":
            doctor = subprocess.run([sys.executable, "-m", "workshop", "doctor", "--target", "local"],
                                    capture_output=True, text=True, env=dict(ENV, COLUMNS="400"), timeout=120)
            assert made.nonce in doctor.stdout or f"sleep {tag}" in doctor.stdout, doctor.stdout
            assert "leftovers of dead kernels: none" not in doctor.stdout
            return
        second = KernelHarness(ENV)
        try:
            code = "%cleanup" if finder == "%cleanup" else "echo hello"
            result = second.run(code)
            assert result.status == "ok", result.stderr
            said = result.stdout + result.stderr
            assert f"sleep {tag}" in said, said
            left = _removed(made, pattern, seconds=3)
            assert not left, f"after {finder}: {left}"
        finally:
            second.shutdown()
    finally:
        kernel.kill()
        _leave_nothing(pattern)


def test_a_dropped_ssh_connection_mid_cell_leaves_nothing_and_the_next_cell_works(rootfs, sshd):
    """sshd's processes for the kernel's connection killed while a container runs:
    the warden on the target ends it, and the next cell reconnects."""
    tag = random.randint(1_000_000, 9_999_999)
    pattern = f"^sleep {tag}$"
    kernel = KernelHarness(dict(ENV, WORKSHOP_TARGET=sshd.url))
    try:
        assert kernel.run("true").status == "ok"
        mine = set(sshd.session_pids())
        made = _start_cell(kernel, f"%%cgroup --pids 20\n%%overlay {rootfs}\nsleep {tag}", pattern)
        for pid in mine:
            os.kill(pid, signal.SIGKILL)
        left = _removed(made, pattern)
        assert not left, f"after the connection dropped: {left}"
        made.cell.join(30)  # that cell ended, reporting the lost connection
        assert not made.cell.is_alive()
        again = kernel.run("echo fine")
        assert again.status == "ok" and again.stdout == "fine\n", (again.stderr, again.errors)
    finally:
        kernel.shutdown()
        _leave_nothing(pattern)
