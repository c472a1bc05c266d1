"""Output paced under a Jupyter server's IOPub rate limits (see StreamPacer)."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable

# Pacing under jupyter_server's IOPub limits (StreamPacer): its window, the share
# of its data limit paced output uses, the mean gap between stream messages (the
# server allows 1,000 a second), characters per message, bytes of a message's headers.
SERVER_WINDOW, PACED_SHARE, MESSAGE_GAP, CHUNK, HEADERS = 3.0, 0.6, 0.02, 64 * 1024, 2048
# Messages that may go at once after a quiet while: a cell's switches between
# stdout and stderr (each a message) show without waiting.  At most
# MESSAGE_BURST + (SERVER_WINDOW + 0.5) / MESSAGE_GAP messages in a window, a
# tenth of what the server allows.
MESSAGE_BURST = 200


class StreamPacer:
    """Stream messages under a Jupyter server's IOPub rate limits.

    jupyter_server counts, per browser connection, every IOPub message but status,
    comm_open and execute_input, and the serialized bytes of stream messages, over
    a sliding window (3 s); above 1,000 messages/s or its data limit (1,000,000
    bytes/s) it drops all output, display_data too, until both rates are under 80 %.
    Messages leave MESSAGE_GAP apart on average (MESSAGE_BURST of them may go at
    once), bytes at PACED_SHARE of the limit (token buckets: delays on the way
    cannot fill a window either); meanwhile the shell's output waits in its
    pipe, so a fast writer's comes in larger messages.
    """

    def __init__(self, send: Callable[[str, str], None], data_limit: int) -> None:
        self._send, self.data_limit, self._rate = send, data_limit, data_limit * PACED_SHARE
        self._tokens, self._last = float(CHUNK), 0.0  # bytes that may go at once, as of the last message
        self._messages = float(MESSAGE_BURST)  # messages that may go at once, as of the last message
        self._sent: collections.deque[tuple[float, int]] = collections.deque()  # (when, bytes)

    def write(self, name: str, text: str) -> None:
        for start in range(0, len(text), CHUNK):
            part = text[start : start + CHUNK]
            cost = len(json.dumps(part, ensure_ascii=False).encode("utf-8", "surrogatepass")) + HEADERS
            debt = max(-self._tokens, 0.0) / self._rate if self._rate else 0.0
            short = max(1.0 - self._messages, 0.0) * MESSAGE_GAP  # till a message may go
            delay = self._last + max(short, debt) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            self._messages = min(float(MESSAGE_BURST), self._messages + (now - self._last) / MESSAGE_GAP) - 1
            if self._rate:
                self._tokens = min(float(CHUNK), self._tokens + (now - self._last) * self._rate) - cost
            self._last = now
            self._recent(now).append((now, cost))
            self._send(name, part)

    def settle(self) -> None:
        """Wait until the server would pass a message even had it gone over its
        limit: the bytes of the last window (and slack) under 70 % of the limit."""
        while self._rate and sum(c for _, c in self._recent(time.monotonic())) > 0.7 * SERVER_WINDOW * self.data_limit:
            time.sleep(max(self._sent[0][0] + SERVER_WINDOW + 0.5 - time.monotonic(), 0.01))

    def _recent(self, now: float) -> collections.deque[tuple[float, int]]:  # the window, 0.5 s slack
        while self._sent and self._sent[0][0] < now - SERVER_WINDOW - 0.5:
            self._sent.popleft()
        return self._sent
