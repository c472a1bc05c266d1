"""%lsmagic and %help NAME."""

from __future__ import annotations

from argparse import Namespace

from ..errors import MagicError
from . import Magic, all_magics, arguments, forms, register
from .context import CellContext

LSMAGIC = arguments("lsmagic")
HELP = arguments("help")
HELP.add_argument("name", metavar="NAME")


def _lsmagic(ctx: CellContext, args: Namespace) -> None:
    ctx.print("\n".join(f"{magic.usage:<48} {magic.summary}" for magic in all_magics()) + "\n")


def _help(ctx: CellContext, args: Namespace) -> None:
    name = args.name.lstrip("%")
    found = forms(name)
    if not found:
        raise MagicError(f"no magic named {name}; %lsmagic lists them")
    ctx.print("".join(magic.doc or f"{magic.usage}\n    {magic.summary}\n" for magic in found))


register(Magic("lsmagic", "list the magics", _lsmagic, LSMAGIC))
register(Magic("help", "show how to use a magic", _help, HELP))
