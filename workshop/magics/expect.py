"""%expect — what the cell's own result must be (see workshop.checks)."""

from __future__ import annotations

import argparse
from argparse import Namespace

from ..checks import EXPECT_HELP, EXPECT_USAGE, parse_expect
from ..errors import MagicError
from . import Magic, arguments, register
from .context import CellContext

# The cell grammar hands %expect its arguments as one raw string: a regex is not shell words.
ARGS = arguments("expect")
STREAMS = ("stdout", "stderr")


def _words(before: list[str]) -> list[str]:
    """What Tab offers after %expect: the kind of expectation, then ``empty`` after a stream."""
    if not before:
        return ["exit", *STREAMS, *(f"{stream}-contains" for stream in STREAMS)]
    return ["empty"] if before == [before[0]] and before[0] in STREAMS else []


ARGS.add_argument("spec", nargs="?", default="", completions=_words, help=argparse.SUPPRESS)  # the doc has its forms


def run(ctx: CellContext, args: Namespace) -> None:
    if not args.spec:
        raise MagicError(f"usage: {EXPECT_USAGE}")
    ctx.expect(parse_expect(args.spec))


register(Magic("expect", "state what the cell's result must be (exit, stdout, stderr)", run, ARGS,
               doc=EXPECT_HELP.partition("\n")[2], usage_text=EXPECT_USAGE,
               example="""\
                   %expect exit 0
                   echo hello world
                   # declarations may stand above or below the commands
                   %expect stdout-contains hello
                   %expect stderr empty"""))
