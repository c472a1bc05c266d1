"""%cleanup — undo what the magics made: mounts, cgroups, snapshot directories;
and remove what kernels that died (``kill -9``) left on the target."""

from __future__ import annotations

from argparse import Namespace

from ..errors import MagicError
from . import Magic, arguments, register
from .context import CellContext

ARGS = arguments("cleanup")


def run(ctx: CellContext, args: Namespace) -> None:
    keys = ctx.session.cleanup_keys()
    dead = ctx.session.sweep_leftovers()
    for items in dead.values():
        for item in items:
            ctx.print(f"left by a kernel that died: {item}\n")
    if not keys:
        if not dead:
            ctx.print("nothing to clean up\n")
        return
    failed = ctx.session.run_cleanups()
    for key in reversed([k for k in keys if k not in failed]):
        ctx.print(f"removed {key}\n")
    if failed:
        raise MagicError("could not undo: " + ", ".join(failed) + " (run %cleanup again to retry)")


register(Magic("cleanup", "undo what the magics made (mounts, cgroups, snapshots)", run, ARGS,
               doc="""\
                   Unmounts and deletes the snapshots %%overlay kept, removes the cgroups
                   %%cgroup --name kept, and whatever else this kernel's magics left on the
                   target, newest first; it says what it removed.  It also removes what a
                   kernel killed with kill -9 left behind.  Shutting the kernel down or
                   restarting it runs it too.""",
               example="%cleanup"))
