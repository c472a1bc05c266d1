"""%timeout N|off — interrupt cells that run longer than N seconds."""

from __future__ import annotations

from . import Magic, MagicCall, MagicError, register

USAGE = "%timeout SECONDS | %timeout off"


def run(ctx, call: MagicCall) -> None:
    if not call.args:
        current = ctx.kernel.cell_timeout
        ctx.print(f"timeout: {f'{current:g} s' if current else 'off'}\n")
        return
    if len(call.args) != 1:
        raise MagicError(f"usage: {USAGE}")
    value = call.args[0]
    if value in ("off", "none", "0"):
        ctx.kernel.cell_timeout = None
        return
    try:
        seconds = float(value)
    except ValueError:
        raise MagicError(f"'{value}' is not a number of seconds; usage: {USAGE}") from None
    if seconds <= 0:
        raise MagicError(f"the timeout must be positive; usage: {USAGE}")
    ctx.kernel.cell_timeout = seconds


register(
    Magic("timeout", USAGE, "interrupt this and later cells after N seconds (off to disable)", run)
)
