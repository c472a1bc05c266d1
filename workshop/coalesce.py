"""A cell's stream output sent in whole pieces (see StreamCoalescer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# How long a write may wait for more of the same stream before it is sent, and
# how much may wait: live output shows this much later at most.
LINGER, MAX_PENDING = 0.05, 64 * 1024


class StreamCoalescer:
    """Consecutive writes to one stream go out as one stream message.

    A program often writes one line in several ``write()`` calls (glibc's
    ``error()``, which ``ls`` uses, writes the program's name, the message and
    the newline apart), and each came as a message of its own: notebooks saved
    by nbclient and their HTML exports kept them as separate outputs, one line
    cut in two.  A write waits up to LINGER for more of its stream; a write to
    the other stream, MAX_PENDING characters or :meth:`flush` (before an input
    box or a display, at the end of the cell) send what waits at once, so the
    order between stdout and stderr stays as written.  The lock is held while
    sending: messages leave in the order they were taken.
    """

    def __init__(self, send: Callable[[str, str], None]) -> None:
        self._send = send
        self._lock = threading.Condition()
        self._name = ""
        self._parts: list[str] = []
        self._size = 0
        self._since = 0.0
        threading.Thread(target=self._linger, name="workshop-coalesce", daemon=True).start()

    def write(self, name: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            if name != self._name:
                self._flush()
                self._name = name
            if not self._parts:
                self._since = time.monotonic()
                self._lock.notify()
            self._parts.append(text)
            self._size += len(text)
            if self._size >= MAX_PENDING:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._parts:
            text, self._parts, self._size = "".join(self._parts), [], 0
            self._send(self._name, text)

    def _linger(self) -> None:
        with self._lock:
            while True:
                left = self._since + LINGER - time.monotonic() if self._parts else None
                if left is not None and left <= 0:
                    self._flush()
                else:
                    self._lock.wait(left)
