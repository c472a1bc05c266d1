"""Starting and stopping the collector without systemd: a process of its own, its pid in
``COURSE/collector.pid`` and its log in ``COURSE/collector.log``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ..errors import ExchangeError
from .course import Course
from .handin import request


def _pid(course: Course) -> int | None:
    try:
        pid = int((course.root / "collector.pid").read_text().strip())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"exchange" in cmdline and b"serve" in cmdline else None  # not a recycled pid


def status(course: Course) -> dict | None:
    """The collector's hello, or None when none answers."""
    try:
        return request(course, {"op": "hello"}, timeout=5)
    except ExchangeError:
        return None


def start(course: Course, wait: float = 30.0) -> int:
    """Start the collector in the background; its pid, once it answers."""
    course.must_exist()
    if status(course):
        raise ExchangeError(f"a collector already answers on {course.socket}")
    fd = os.open(course.root / "collector.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workshop", "exchange", "serve", "--course", str(course.root)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                cwd="/")
    (course.root / "collector.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ExchangeError(f"the collector stopped at once (status {proc.returncode}); see "
                                f"{course.root / 'collector.log'}")
        if status(course):
            return proc.pid
        time.sleep(0.1)
    raise ExchangeError(f"the collector did not answer within {wait:g} s; see {course.root / 'collector.log'}")


def stop(course: Course, wait: float = 10.0) -> bool:
    """Stop the collector started by :func:`start`; False when none was running."""
    pid = _pid(course)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _pid(course) == pid:
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child, when started from this process
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if _pid(course) == pid:
        os.kill(pid, signal.SIGKILL)
    (course.root / "collector.pid").unlink(missing_ok=True)
    return True


__all__ = ["start", "status", "stop"]
