"""shell/ordered.py: the relay keeps stdout and stderr in the order written (real bash and perl)."""

from __future__ import annotations

import shutil

import pytest

from workshop.shell.channels import HERE, LocalChannel
from workshop.shell.persistent import PersistentShell

pytestmark = pytest.mark.skipif(shutil.which("perl") is None, reason="the relay is a Perl program")


def test_alternating_writes_arrive_in_the_order_written():
    shell = PersistentShell(lambda command: LocalChannel(command, aside=HERE, cwd="/tmp"))
    shell.start(ordered=True)
    try:
        assert shell.ordered
        seen: list[tuple[str, bytes]] = []
        outcome = shell.run("for i in 1 2 3; do echo out$i; echo err$i >&2; done",
                            lambda name, data: seen.append((name, data)), timeout=20)
        assert outcome.ok
        lines = [(name, line) for name, data in seen for line in data.decode().splitlines()]
        assert lines == [("stdout", "out1"), ("stderr", "err1"), ("stdout", "out2"), ("stderr", "err2"),
                         ("stdout", "out3"), ("stderr", "err3")]
    finally:
        shell.close()
