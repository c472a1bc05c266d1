"""Progress of a rerun batch: a live bar on a terminal, near silence in CI.

On a terminal (stderr a TTY, and not ``CI=true``) a rich progress bar shows
how many submissions are done, running and failed, the time elapsed and an
estimate of the time left.  Anywhere else (a CI log, a file) nothing is
drawn: at most a plain line every few minutes, so a long batch still shows
it is alive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

PLAIN_EVERY = 300.0  # seconds between the plain lines of a batch that is not on a terminal


def live(console, env: Mapping[str, str] = os.environ) -> bool:
    """Whether to draw a live bar: a terminal, and not a CI job that gave itself one."""
    return bool(console.is_terminal) and env.get("CI", "").lower() not in ("true", "1", "yes")


class RerunProgress:
    """Count submissions as they finish; ``slots`` is how many can run at once."""

    def __init__(self, console, total: int, slots: int, done: int = 0, env: Mapping[str, str] = os.environ,
                 plain_every: float = PLAIN_EVERY):
        self.console, self.total, self.slots = console, total, max(slots, 1)
        self.done, self.failed = done, 0
        self.plain_every = plain_every
        self.started = self._said = time.monotonic()
        self._bar = self._task = None
        if live(console, env):
            self._bar = _rich_bar(console)

    @property
    def running(self) -> int:
        return min(self.slots, self.total - self.done)

    def __enter__(self) -> RerunProgress:
        if self.done:  # said once, in CI too: a resumed batch that reruns little is not a mistake
            self.console.print(f"{self.done} of {self.total} submissions need no rerun (stored already by an "
                               "earlier run, or unreadable)", highlight=False, markup=False)
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("re-running", total=self.total, completed=self.done, **self._fields())
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def finished(self, failed: bool = False) -> None:
        """One more submission is done (``failed``: its rerun failed or timed out)."""
        self.done += 1
        self.failed += bool(failed)
        if self._bar is not None:
            self._bar.update(self._task, advance=1, **self._fields())
        elif time.monotonic() - self._said >= self.plain_every and self.done < self.total:
            self._said = time.monotonic()
            elapsed = int(time.monotonic() - self.started)
            self.console.print(f"re-running: {self.done}/{self.total} done, {self.failed} failed, "
                               f"{elapsed // 60}m{elapsed % 60:02d}s elapsed", highlight=False, markup=False)

    def _fields(self) -> dict:
        return {"running": self.running, "failed": self.failed}


def _rich_bar(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("done"),
        TextColumn("· {task.fields[running]} running · {task.fields[failed]} failed ·"),
        TimeElapsedColumn(), TextColumn("elapsed, about"), TimeRemainingColumn(), TextColumn("left"),
        console=console, transient=False)


__all__ = ["RerunProgress", "live"]
