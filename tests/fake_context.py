"""A CellContext without a kernel or a persistent shell, for tests of what a magic's
arguments become: the shell code it returns, what it registers, prints and expects.

Hidden commands (a magic's look-ups, such as resolving a root filesystem) run for
real in a fresh bash on this machine, as the user running the tests (no root);
uploads, cleanups and target switches are only recorded, never done.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from workshop import magics
from workshop.cell import parse_magic_line
from workshop.magics.context import CellContext
from workshop.records import Record
from workshop.settings import Settings
from workshop.shell.result import CommandResult
from workshop.targets import Target, parse_target


class FakeSession:
    """What magics may call on a session (magics.context.SessionOps), recorded."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.target: Target = parse_target("local", self.settings)
        self.target_source = "default"
        self.timeout: float | None = None
        self.notebook: Any = None  # a SavedNotebook (.path) when a test gives one
        self.timeout_is_default = False
        self.hidden: list[str] = []
        self.uploads: dict[str, tuple[bytes, str | None]] = {}
        self.cleanups: dict[str, str] = {}
        self.switched: list[tuple[str, str]] = []
        self._state: dict[str, Any] = {}

    def run_hidden(self, code: str, timeout: float | None = 60) -> CommandResult:
        self.hidden.append(code)
        done = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True,
                              timeout=timeout)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult:
        self.uploads[path] = (data, mode)
        return CommandResult(0)

    def register_cleanup(self, key: str, shell_code: str) -> None:
        self.cleanups[key] = shell_code

    def forget_cleanup(self, key: str) -> None:
        self.cleanups.pop(key, None)

    def cleanup_keys(self) -> list[str]:
        return list(self.cleanups)

    def run_cleanups(self) -> list[str]:
        self.cleanups.clear()
        return []

    def sweep_leftovers(self) -> dict[str, list[str]]:
        return {}

    def switch_target(self, target: Target, source: str) -> None:
        self.switched.append((target.spec, source))
        self.target, self.target_source = target, source

    def state(self, key: str, factory: Callable[[], Any]) -> Any:
        return self._state.setdefault(key, factory())


def fake_context(session: FakeSession | None = None) -> tuple[CellContext, list[tuple[str, str]]]:
    """A context on a FakeSession, and the list its printed text goes to."""
    printed: list[tuple[str, str]] = []
    session = session or FakeSession()
    record = Record(cell_id=None, execution_count=1, session="test", target=session.target.as_record(),
                    started=datetime.now(timezone.utc), source="")
    ctx = CellContext(session, record, lambda stream, text: printed.append((stream, text)))
    return ctx, printed


def apply(ctx: CellContext, line: str, body: str | None = None) -> str | None:
    """Run one magic line as the session does: ``%name args`` acts, ``%%name args``
    with ``body`` returns the shell code that wraps it."""
    magics.load_all()
    call = parse_magic_line(line, cell=line.startswith("%%"))
    magic = magics.lookup(call)
    args = magic.parse(call)
    return magic.run(ctx, args, body) if call.cell else magic.run(ctx, args)
