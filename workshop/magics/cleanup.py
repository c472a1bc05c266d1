"""%cleanup — undo what the magics made: mounts, cgroups, snapshot directories."""

from __future__ import annotations

from argparse import Namespace

from ..errors import MagicError
from . import Magic, arguments, register
from .context import CellContext

ARGS = arguments("cleanup")


def run(ctx: CellContext, args: Namespace) -> None:
    keys = ctx.runner.cleanup_keys()
    if not keys:
        ctx.print("nothing to clean up\n")
        return
    failed = ctx.runner.run_cleanups()
    for key in reversed([k for k in keys if k not in failed]):
        ctx.print(f"removed {key}\n")
    if failed:
        raise MagicError("could not undo: " + ", ".join(failed) + " (run %cleanup again to retry)")


register(Magic("cleanup", "undo what the magics made (mounts, cgroups, snapshots)", run, ARGS))
