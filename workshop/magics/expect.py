"""%expect — what the cell's own result must be (see workshop.checks)."""

from __future__ import annotations

from argparse import Namespace

from ..checks import EXPECT_HELP, EXPECT_USAGE, parse_expect
from ..errors import MagicError
from . import Magic, arguments, register
from .context import CellContext

# The cell grammar hands %expect its arguments as one raw string: a regex is not shell words.
ARGS = arguments("expect")
ARGS.add_argument("spec", nargs="?", default="")


def run(ctx: CellContext, args: Namespace) -> None:
    if not args.spec:
        raise MagicError(f"usage: {EXPECT_USAGE}")
    ctx.expect(parse_expect(args.spec))


register(Magic("expect", "state what the cell's result must be (exit, stdout, stderr)", run, ARGS,
               doc=EXPECT_HELP, usage_text=EXPECT_USAGE))
