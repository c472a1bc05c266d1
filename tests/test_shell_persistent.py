"""shell/persistent.py: one long-lived bash on a local channel: state, status, streams, an exit."""

from __future__ import annotations

import pytest

from workshop.shell.channels import HERE, LocalChannel
from workshop.shell.persistent import PersistentShell


@pytest.fixture
def shell():
    started = PersistentShell(lambda command: LocalChannel(command, aside=HERE, cwd="/tmp"))
    started.start()
    yield started
    started.close()


def run(shell, code):
    seen: list[tuple[str, bytes]] = []
    outcome = shell.run(code, lambda name, data: seen.append((name, data)), timeout=20)
    text = {name: b"".join(d for n, d in seen if n == name).decode() for name in ("stdout", "stderr")}
    return outcome, text


def test_state_carries_from_cell_to_cell(shell):
    run(shell, "cd /; x=42; f() { echo \"in f $1\"; }")
    outcome, text = run(shell, "echo $PWD $x; f arg")
    assert outcome.ok and text["stdout"] == "/ 42\nin f arg\n"


def test_the_last_status_is_the_cells_and_earlier_failures_are_named(shell):
    outcome, text = run(shell, "false\necho out; echo err >&2\n(exit 4)")
    assert outcome.status == 4 and text == {"stdout": "out\n", "stderr": "err\n"}
    assert [(f.line, f.status) for f in outcome.failed_commands][:1] == [(1, 1)]


def test_exit_ends_the_shell_and_says_so(shell):
    outcome, _ = run(shell, "exit 3")
    assert outcome.shell_ended and not shell.alive
