"""%cleanup — undo what the magics made: mounts, cgroups, snapshot directories."""

from __future__ import annotations

from . import Magic, MagicCall, MagicError, register

USAGE = "%cleanup"


def run(ctx, call: MagicCall) -> None:
    if call.args:
        raise MagicError(f"%cleanup takes no arguments\nusage: {USAGE}")
    keys = list(ctx.kernel.cleanups)
    if not keys:
        ctx.print("nothing to clean up\n")
        return
    failed = ctx.kernel.run_cleanups(ctx)
    done = [k for k in keys if k not in failed]
    for key in reversed(done):
        ctx.print(f"removed {key}\n")
    if failed:
        raise MagicError("could not undo: " + ", ".join(failed) + " (run %cleanup again to retry)")


register(Magic("cleanup", USAGE, "undo what the magics made (mounts, cgroups, snapshots)", run))
