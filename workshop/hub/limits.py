"""A ceiling on what one student takes from the course server, that the student
cannot lift: a cgroup of their own, made by the hub (root) before their server
starts, holding that server and all it starts (kernels, their VMs, terminals).

The VM limits in hub.json's "vm" are kept by the kernel, which the student runs:
a student with a terminal can start qemu by hand. This is the limit that holds
anyway: memory for their VMs plus their server, and a number of tasks (a fork
bomb stops there). The cgroup's files are root's, so the student can neither
change the limits nor move a process out (both need write access there).
Works on cgroup v2 and on v1's memory and pids hierarchies."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from ..shell.leftovers import sweep_script

CGROUP_FS = Path("/sys/fs/cgroup")
SERVER_MB = 1536  # JupyterLab, the kernels and a terminal or two, besides the VMs
VM_OVERHEAD_MB = 256  # qemu itself beside the guest's memory
# hub.json's "student": memory in MB (0: what the VM limits and SERVER_MB add up to), tasks
STUDENT_DEFAULTS = {"memory_mb": 0, "tasks": 1024}


def student_ceiling(settings: dict, vm: dict) -> tuple[int, int]:
    """(memory in bytes, tasks) for one student, from hub.json."""
    student = STUDENT_DEFAULTS | settings.get("student", {})
    memory_mb = int(student["memory_mb"])
    if memory_mb <= 0:
        vms = int(vm["per_student"]) if vm["enabled"] else 0
        memory_mb = SERVER_MB + vms * (int(vm["memory_mb"]) + VM_OVERHEAD_MB)
    return memory_mb << 20, int(student["tasks"])


def parent_name(port: int) -> str:
    """The cgroup that holds one hub's students (a hub per port on a machine)."""
    return f"workshop-hub-{port}"


def _tops(parent: str, fs: Path) -> tuple[bool, list[Path]]:
    if (fs / "cgroup.controllers").exists():
        return True, [fs / parent]
    return False, [fs / "memory" / parent, fs / "pids" / parent]


class StudentCgroup:
    """The cgroup (one on v2; one in each of v1's memory and pids hierarchies)
    of one student of one hub, ``PARENT/NAME``."""

    def __init__(self, name: str, parent: str, fs: Path = CGROUP_FS):
        self.name = name
        self.v2, self.tops = _tops(parent, fs)
        self.dirs = [top / name for top in self.tops]

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def create(self, memory: int, tasks: int) -> None:
        """Make the cgroup (again, if a server of the student's ended) and set its ceiling."""
        if self.v2:
            _enable_controllers(self.tops[0].parent)
            self.tops[0].mkdir(exist_ok=True)
            _enable_controllers(self.tops[0])
            self.dirs[0].mkdir(exist_ok=True)
            (self.dirs[0] / "memory.max").write_text(str(memory))
            if (self.dirs[0] / "memory.swap.max").exists():
                (self.dirs[0] / "memory.swap.max").write_text("0")
            (self.dirs[0] / "pids.max").write_text(str(tasks))
        else:
            memory_dir, pids_dir = self.dirs
            for d in self.dirs:
                d.mkdir(parents=True, exist_ok=True)
            (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
            if (memory_dir / "memory.memsw.limit_in_bytes").exists():
                (memory_dir / "memory.memsw.limit_in_bytes").write_text(str(memory))
            (pids_dir / "pids.max").write_text(str(tasks))

    def join_in_child(self):
        """A function for Popen's preexec_fn (run after the fork, still as root):
        the new process enters the cgroup, so all it starts stays there."""
        files = [os.fsencode(p) for p in self.procs_files]  # no allocation to speak of after the fork

        def join() -> None:
            pid = str(os.getpid()).encode()
            for path in files:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
        return join

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            try:
                found |= {int(line) for line in f.read_text().split()}
            except FileNotFoundError:
                pass
        return found

    def remove(self) -> bool:
        """Remove the cgroup once nothing runs in it; True when it is gone."""
        gone = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # busy: something of the student's still runs
                gone = False
        return gone

    def end(self, grace: float = 5.0) -> bool:
        """End what still runs in the cgroup (TERM, then KILL after ``grace``
        seconds), then remove it; True when it is gone."""
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
        gone = self.remove()
        sweep_sessions_of(self.name)
        return gone


def sweep_sessions_of(name: str) -> None:
    """Once a student's processes are ended, what their kernels' shells left in /tmp: the
    wardens that would have cleaned up ended with them (shell/leftovers.py's sweep, run as
    the student, which removes only the sessions whose shell and warden are gone)."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return
    subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--",
                    "sh", "-c", sweep_script()], cwd="/", capture_output=True, timeout=120, check=False)


def students(parent: str, fs: Path = CGROUP_FS) -> list[StudentCgroup]:
    """The student cgroups a hub made."""
    names = {d.name for top in _tops(parent, fs)[1] if top.is_dir() for d in top.iterdir() if d.is_dir()}
    return [StudentCgroup(name, parent, fs) for name in sorted(names)]


def end_all(parent: str, fs: Path = CGROUP_FS) -> list[str]:
    """When the hub stops: end what runs in each student's cgroup (a process a student
    left behind, detached from their server, too), remove them and the parent; the
    names of those that could not be removed."""
    left = [cgroup.name for cgroup in students(parent, fs) if not cgroup.end()]
    for top in _tops(parent, fs)[1]:
        with contextlib.suppress(OSError):
            top.rmdir()
    return left


def _enable_controllers(group: Path) -> None:
    """v2: let the children of ``group`` use memory and pids (those not yet enabled)."""
    enabled = set((group / "cgroup.subtree_control").read_text().split())
    wanted = [c for c in ("memory", "pids") if c not in enabled]
    if wanted:
        (group / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
