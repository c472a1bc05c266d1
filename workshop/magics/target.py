"""%target SPEC — choose where the following cells run."""

from __future__ import annotations

from argparse import Namespace

from ..errors import MagicError, TargetError
from ..targets import parse_target
from . import Magic, arguments, register
from .context import CellContext

ARGS = arguments("target")
ARGS.add_argument("spec", nargs="?", metavar="SPEC")


def run(ctx: CellContext, args: Namespace) -> None:
    if args.spec is None:
        ctx.print(f"target: {ctx.target.spec} ({ctx.runner.target_source})\n")
        return
    try:
        target = parse_target(args.spec)
    except TargetError as exc:
        raise MagicError(str(exc)) from None
    ctx.runner.switch_target(target, source="%target")  # refused when the run fixed the target
    ctx.print(f"target: {target.spec}\n")


register(Magic("target", "show or choose where cells run", run, ARGS))
