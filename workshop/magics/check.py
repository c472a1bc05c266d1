"""%%check — a shell script that checks the state after the cell (see workshop.checks).

The kernel splits ``%%check`` sections off a cell before the other magics are
read (workshop.checks.split_checks); this entry is for %lsmagic and %help.
"""

from __future__ import annotations

from ..checks import CHECK_HELP, CHECK_USAGE
from . import Magic, MagicCall, MagicError, register


def run(ctx, call: MagicCall, body: str) -> str:  # reached only through a misplaced line
    raise MagicError(f"{call.line}: a %%check line starts a check script below the cell's code; "
                     "see %help check")


register(Magic("check", CHECK_USAGE, "a shell script run after the cell; exit 0 passes, 'FAIL: why' fails",
               run, cell=True, doc=CHECK_HELP))
