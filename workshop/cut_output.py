"""What is left of a stream past the shown-output limit: its end, and all of it in a file.

A cell that prints more than a notebook (or the browser showing it) can take is
cut: the head goes out as it comes, a line says at once where it was cut and
where the whole stream is saved, and when the cell ends its last
``TAIL_CHARS`` characters follow.  Memory stays flat: the tail is a bounded
buffer, the rest goes to the file as it arrives (up to ``SAVED_MAX`` bytes).
"""

from __future__ import annotations

import collections
import datetime
import os
from pathlib import Path

TAIL_CHARS = 16 * 1024
SAVED_MAX = 256 << 20  # bytes of one stream saved: a runaway cell must not fill the disk


class Tail:
    """The last ``size`` characters written."""

    def __init__(self, size: int = TAIL_CHARS) -> None:
        self.size = size
        self._parts: collections.deque[str] = collections.deque()
        self._chars = 0
        self.dropped = 0  # characters that went through and are no longer held

    def add(self, text: str) -> None:
        if not text:
            return
        self._parts.append(text)
        self._chars += len(text)
        while self._chars - len(self._parts[0]) >= self.size:
            self._chars -= len(first := self._parts.popleft())
            self.dropped += len(first)
        if self._chars > self.size:  # trim the oldest part to the size
            over = self._chars - self.size
            self._parts[0] = self._parts[0][over:]
            self._chars -= over
            self.dropped += over

    def text(self) -> str:
        return "".join(self._parts)


class SavedStream:
    """A cut stream written to a file, from its first character on."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close)
        self.written = 0
        self.full = False

    def write(self, text: str) -> None:
        if self.full or not text:
            return
        data = text.encode("utf-8", "replace")
        room = SAVED_MAX - self.written
        if len(data) > room:
            self.full = True
            data = data[:room] + f"\n[workshop: saved no further: {SAVED_MAX >> 20} MiB is the most]\n".encode()
        self._file.write(data)
        self.written += len(data)

    def close(self) -> None:
        self._file.close()


def saved_path(directory: str, execution_count: int, stream: str) -> Path:
    """Where a cut stream of the cell run as ``execution_count`` is saved: unique, in time order."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-cell{execution_count}-{os.getpid()}.{stream}.txt"
    return Path(directory or "workshop-outputs").expanduser() / name
