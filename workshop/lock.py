"""An exclusive lock on a file, for building an image or starting a VM once."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


class FileLock:
    def __init__(self, path: Path, waiting: str = "", say: Callable[[str], None] | None = None):
        self.path = path
        self.waiting = waiting
        self.say = say
        self.fd: int | None = None

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:  # another user's lock file, readable: a lock shared by all users
            self.fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.say and self.waiting:
                self.say(f"waiting: {self.waiting}")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
