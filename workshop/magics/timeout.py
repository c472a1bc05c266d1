"""%timeout N|off — interrupt cells that run longer than N seconds."""

from __future__ import annotations

import argparse

from . import Magic, arguments, register
from .context import CellContext


def _seconds(text: str) -> float | None:
    if text in ("off", "none", "0"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the timeout must be positive")
    return seconds


ARGS = arguments("timeout")
ARGS.add_argument("seconds", nargs="?", type=_seconds, default=False, metavar="SECONDS|off", completions=("off",),
                  help="seconds a cell may run (decimals allowed), or off; without it, show the timeout")


def run(ctx: CellContext, args: argparse.Namespace) -> None:
    if args.seconds is False:  # no argument: say what it is
        current = ctx.session.timeout
        default = " (the default in a notebook)" if ctx.session.timeout_is_default else ""
        ctx.print(f"timeout: {f'{current:g} s' if current else 'off'}{default}\n")
        return
    ctx.session.timeout = args.seconds


register(Magic("timeout", "interrupt this and later cells after N seconds (off to disable)", run, ARGS,
               doc="""\
                   A cell still running after that long is stopped as the stop button would
                   stop it: its command and what it started end, the shell and its state stay,
                   and the cell says it timed out (exit status 130).  WORKSHOP_TIMEOUT sets
                   the timeout for every kernel.  In a notebook a Jupyter server runs, a cell
                   stops after 10 minutes unless a timeout is set; headless runs (workshop run,
                   papermill) have no limit but their own.""",
               example="""\
                   %timeout 5
                   sleep 60    # stopped after 5 s"""))
