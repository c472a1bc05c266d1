"""%%chroot ROOTFS — run the cell body inside ROOTFS with its own /bin/sh."""

from __future__ import annotations

from argparse import Namespace

from ..arguments import FILES
from . import Magic, arguments, register
from ._shared import chroot_command, resolve_root
from .context import CellContext

ARGS = arguments("chroot", cell=True)
ARGS.add_argument("rootfs", metavar="ROOTFS", completions=FILES,
                  help="a directory on the target holding a root filesystem (%rootfs makes one)")


def run(ctx: CellContext, args: Namespace, body: str) -> str:
    root = resolve_root(ctx, args.rootfs, "%%chroot")
    code = chroot_command(root, body)
    ctx.stack["root"] = root
    ctx.stack["command"] = code
    return code


register(Magic("chroot", "run the cell body chrooted into ROOTFS, with its own /bin/sh", run, ARGS, cell=True,
               doc="""\
                   ROOTFS becomes / for the body, which runs as a script of ROOTFS's own
                   /bin/sh: only the programs and libraries inside ROOTFS exist there.
                   Nothing is mounted for it (no /proc unless you mount one), and the
                   body's cd and variables end with the cell.  Changes the body makes to
                   ROOTFS stay; %%overlay gives a snapshot that leaves ROOTFS as it was.
                   Below %%unshare or %%cgroup it runs in their namespaces and cgroup.""",
               example="""\
                   %%chroot rootfs
                   ls /
                   echo "my shell is $0"
                   cat /etc/passwd    # ROOTFS's own, not the host's"""))
