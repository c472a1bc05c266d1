"""A cgroup per kernel on this machine: it holds a kernel and everything it starts, so that all of
it is killed at once, and caps its processes (a fork bomb in a rerun).  Cgroups left by a grader
that was killed are found and removed by :meth:`KernelCgroup.sweep`."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

from .errors import NotebookError


def _cgroup_mounts() -> list[tuple[Path, str, str]]:
    """The cgroup hierarchies mounted here: (where, "cgroup" or "cgroup2", mount options)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields, _, fs = line.partition(" - ")
        parts = fs.split()
        if parts and parts[0] in ("cgroup", "cgroup2"):
            found.append((Path(fields.split()[4].replace("\\040", " ")), parts[0], parts[-1]))
    return found


def _cgroup2_mount() -> Path | None:
    """Where a cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems)."""
    return next((where for where, kind, _ in _cgroup_mounts() if kind == "cgroup2"), None)


def _cgroup1_mount(controller: str) -> Path | None:
    """Where the cgroup v1 hierarchy of ``controller`` is mounted (hybrid systems keep pids there), or None."""
    return next((where for where, kind, options in _cgroup_mounts()
                 if kind == "cgroup" and controller in options.split(",")), None)


def _count(path: Path, key: str) -> int:
    """The number after ``key`` in a cgroup's flat-keyed file (pids.events, memory.events), or 0."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot ("" when it is gone): with the
    pid, it names one process even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def _pids_limited(path: Path, pids_max: int) -> Path | None:
    """The cgroup that caps ``path``'s processes at ``pids_max``: itself when cgroup v2 has the pids
    controller, else a cgroup of the same name in the v1 pids hierarchy; None when neither can."""
    try:
        (path.parent / "cgroup.subtree_control").write_text("+pids")
        (path / "pids.max").write_text(str(pids_max))
        return path
    except OSError:
        pass
    mount = _cgroup1_mount("pids")
    if mount is None:
        return None
    v1 = mount / KernelCgroup.DIRNAME / path.name
    try:
        v1.mkdir(parents=True)
        (v1 / "pids.max").write_text(str(pids_max))
    except OSError:
        return None
    return v1


def _remove_tree(path: Path, kill) -> None:
    """Remove a cgroup and those under it, killing what still runs there while they are busy."""
    for _ in range(50):
        try:
            for root, _dirs, _files in os.walk(path, topdown=False):
                Path(root).rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY while the last processes exit
            time.sleep(0.1)
            kill()


class KernelCgroup:
    """A cgroup v2 that holds one kernel and everything it starts, whatever they do
    (``setsid``, ``nohup``, double forks), so that all of it is killed at once.

    They live under ``<cgroup2 mount>/workshop-runs/``, named ``PID-START-PIDNS-TOKEN``
    after the process that made them.  One whose maker is gone (a grader killed
    with SIGKILL) is emptied and removed by the next :meth:`sweep` in the same
    PID namespace (where that PID means that process)."""

    DIRNAME = "workshop-runs"

    def __init__(self, path: Path, pids: Path | None = None, pids_max: int | None = None):
        self.path = path
        self.pids_group = pids  # where pids.max is: this cgroup, or one in the v1 pids hierarchy (hybrid systems)
        self.pids_max = pids_max

    @property
    def paths(self) -> list[Path]:
        """The cgroups the kernel joins: this one, and the v1 pids cgroup when the limit lives there."""
        return [self.path] + ([self.pids_group] if self.pids_group and self.pids_group != self.path else [])

    @classmethod
    def parent(cls) -> Path | None:
        mount = _cgroup2_mount()
        return mount / cls.DIRNAME if mount else None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why no cgroup can be made here, or None."""
        parent = cls.parent()
        if parent is None:
            return "no cgroup v2 hierarchy is mounted"
        try:
            parent.mkdir(exist_ok=True)
        except OSError as exc:
            return f"cannot make cgroups under {parent.parent} ({exc.strerror or exc}; run as root)"
        return None

    @classmethod
    def create(cls, pids_max: int | None = None) -> KernelCgroup:
        """A new cgroup; with ``pids_max``, no more processes than that may live in it at once."""
        why = cls.unavailable()
        parent = cls.parent()
        if why or parent is None:
            raise NotebookError(f"cannot contain the kernel in a cgroup: {why}")
        path = parent / f"{os.getpid()}-{_start_time(os.getpid())}-{_pid_namespace()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except OSError as exc:
            raise NotebookError(f"cannot make the cgroup {path}: {exc.strerror or exc}") from None
        group = cls(path)
        if pids_max:
            group.pids_group, group.pids_max = _pids_limited(path, pids_max), pids_max
        return group

    def limits_hit(self) -> list[str]:
        """The limits the processes in the cgroup reached, as phrases."""
        refused = _count(self.pids_group / "pids.events", "max") if self.pids_group else 0
        if not refused:
            return []
        return [f"its processes reached the limit of {self.pids_max} processes at once (a fork bomb?): "
                f"{refused} new processes were refused"]

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def populated(self) -> bool:
        try:
            return "populated 1" in (self.path / "cgroup.events").read_text()
        except OSError:
            return False

    def kill(self, wait: float = 10.0) -> None:
        """SIGKILL everything in the cgroup and wait until it is empty."""
        deadline = time.monotonic() + wait
        while self.populated() and time.monotonic() < deadline:
            try:
                (self.path / "cgroup.kill").write_text("1")  # Linux 5.14 and later
            except OSError:
                for pid in self.pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill everything in the cgroup, then remove it with any cgroups a cell made inside it."""
        self.kill()
        for path in reversed(self.paths):
            _remove_tree(path, self.kill)

    @classmethod
    def sweep(cls) -> int:
        """Empty and remove the cgroups whose maker is gone; how many there were."""
        parent = cls.parent()
        v1 = _cgroup1_mount("pids")
        parents = [p for p in (parent, v1 / cls.DIRNAME if v1 else None) if p is not None]
        entries: list[Path] = []
        for folder in parents:
            try:
                entries += list(folder.iterdir())
            except OSError:
                pass
        swept = 0
        for path in entries:
            pid, start, namespace, _ = ([*path.name.split("-"), "", "", ""])[:4]
            if not path.is_dir() or namespace != _pid_namespace():
                continue  # not a cgroup, or made where this process cannot tell whether its maker runs
            if pid.isdigit() and _start_time(int(pid)) == start:
                continue  # its maker still runs
            if path.parent == parent:
                cls(path).remove()
                swept += 1
            else:  # the v1 pids twin: its processes were killed with the v2 cgroup
                _remove_tree(path, lambda: None)
        return swept


__all__ = ["KernelCgroup"]
