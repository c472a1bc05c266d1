"""%target SPEC — choose where the following cells run."""

from __future__ import annotations

from ..targets import TARGET_USAGE, TargetError, parse_target
from . import Magic, MagicCall, MagicError, register


def run(ctx, call: MagicCall) -> None:
    if not call.args:
        ctx.print(f"target: {ctx.kernel.target.spec} ({ctx.kernel.target_source})\n")
        return
    if len(call.args) != 1:
        raise MagicError(f"usage: %target SPEC; {TARGET_USAGE}")
    try:
        target = parse_target(call.args[0])
    except TargetError as exc:
        raise MagicError(str(exc)) from None
    ctx.kernel.switch_target(target, source="%target")
    ctx.print(f"target: {target.spec}\n")


register(Magic("target", "%target [SPEC]", "show or choose where cells run", run))
