"""%%check — a shell script that checks the state after the cell (see workshop.checks).

The cell grammar splits ``%%check`` sections off a cell before the other
magics are read (workshop.cell.split_checks); this entry is for %lsmagic and %help.
"""

from __future__ import annotations

from argparse import Namespace

from ..checks import CHECK_ARGUMENTS, CHECK_HELP
from ..errors import MagicError
from . import Magic, register
from .context import CellContext


def run(ctx: CellContext, args: Namespace, body: str) -> str:  # reached only through a misplaced line
    raise MagicError("a %%check line starts a check script below the cell's code; see %help check")


register(Magic("check", "a shell script run after the cell; exit 0 passes, 'FAIL: why' fails", run,
               CHECK_ARGUMENTS, cell=True, doc=CHECK_HELP.partition("\n")[2],
               example="""\
                   %rootfs rootfs
                   %%check --points 2 --name has-busybox
                   test -x rootfs/bin/busybox || echo "FAIL: rootfs/bin/busybox is missing"
                   %%check --name has-sh
                   chroot rootfs /bin/sh -c true || echo "FAIL: rootfs has no working /bin/sh"
                   """))
