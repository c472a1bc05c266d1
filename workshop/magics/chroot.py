"""%%chroot ROOTFS — run the cell body inside ROOTFS with its own /bin/sh."""

from __future__ import annotations

from argparse import Namespace

from . import Magic, arguments, register
from .container import chroot_command, resolve_root
from .context import CellContext

ARGS = arguments("chroot", cell=True)
ARGS.add_argument("rootfs", metavar="ROOTFS")


def run(ctx: CellContext, args: Namespace, body: str) -> str:
    root = resolve_root(ctx, args.rootfs, "%%chroot")
    code = chroot_command(root, body)
    ctx.stack["root"] = root
    ctx.stack["command"] = code
    return code


register(Magic("chroot", "run the cell body chrooted into ROOTFS, with its own /bin/sh", run, ARGS, cell=True))
