"""%expect — what the cell's own result must be (see workshop.checks)."""

from __future__ import annotations

from ..checks import EXPECT_HELP, EXPECT_USAGE, CheckSyntaxError, parse_expect
from . import Magic, MagicCall, MagicError, register


def run(ctx, call: MagicCall) -> None:
    if not call.args:
        raise MagicError(f"usage: {EXPECT_USAGE}")
    try:
        expectation = parse_expect(call.args[0])
    except CheckSyntaxError as exc:
        raise MagicError(str(exc)) from None
    ctx.expect(expectation)


register(Magic("expect", EXPECT_USAGE, "state what the cell's result must be (exit, stdout, stderr)", run,
               doc=EXPECT_HELP))
