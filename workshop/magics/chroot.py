"""%%chroot ROOTFS — run the cell body inside ROOTFS with its own /bin/sh."""

from __future__ import annotations

from . import Magic, MagicCall, register
from .container import chroot_command, parse_args, resolve_root, stack

USAGE = "%%chroot ROOTFS"


def run(ctx, call: MagicCall, body: str) -> str:
    opts = parse_args(MAGIC, call.args, npos=(1, 1))
    root = resolve_root(ctx, opts.positional[0], "%%chroot")
    code = chroot_command(root, body)
    state = stack(ctx)
    state["root"] = root
    state["command"] = code
    return code


MAGIC = register(
    Magic("chroot", USAGE, "run the cell body chrooted into ROOTFS, with its own /bin/sh", run, cell=True)
)
