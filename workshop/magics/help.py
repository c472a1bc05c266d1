"""%lsmagic, %help and %help NAME.

A magic's help is made from its declaration: the usage line and the argument
lines from its :class:`~workshop.arguments.MagicArguments`, around the summary,
the longer ``doc`` and the ``example`` its module registers.  Shift-Tab on a
magic shows the same text (workshop.inspection).
"""

from __future__ import annotations

import textwrap
from argparse import Namespace

from ..errors import MagicError
from . import Magic, all_magics, arguments, forms, names, register
from .context import CellContext

INDENT = " " * 4
COLUMN = 22  # where an argument's help starts, when the argument is short enough
WIDTH = 88

LSMAGIC = arguments("lsmagic")
HELP = arguments("help")
HELP.add_argument("name", metavar="NAME", nargs="?", completions=lambda before: sorted(names()),
                  help="a magic's name, with or without its % or %%; without one, the list of magics")


def help_text(magic: Magic) -> str:
    """Everything %help says about one form (line or cell) of a magic."""
    parts = [f"{magic.usage}\n{INDENT}{magic.summary}\n"]
    if magic.doc:
        parts.append(textwrap.indent(textwrap.dedent(magic.doc).strip("\n"), INDENT) + "\n")
    lines = magic.arguments.argument_lines()
    if lines:
        parts.append("".join(_argument_line(written, text) for written, text in lines))
    if magic.example:
        parts.append(f"{INDENT}example:\n" + textwrap.indent(textwrap.dedent(magic.example).strip("\n"), INDENT * 2)
                     + "\n")
    return "\n".join(parts)


def _argument_line(written: str, text: str) -> str:
    lines = textwrap.wrap(text, WIDTH - len(INDENT) - COLUMN) or [""]
    if len(written) >= COLUMN - 1:  # the help goes below a long argument
        lines.insert(0, "")
    first = f"{INDENT}{written:<{COLUMN}}{lines[0]}".rstrip()
    return "\n".join([first] + [f"{INDENT}{'':<{COLUMN}}{line}" for line in lines[1:]]) + "\n"


def _columns(rows: list[tuple[str, str]], column: int) -> str:
    """``left  right`` lines; a left part too long for its column puts the right
    part on the next line, aligned, rather than pushing it out of line."""
    lines = []
    for left, right in rows:
        if len(left) < column:
            lines.append(f"{left:<{column}}{right}")
        else:
            lines += [left, f"{'':<{column}}{right}"]
    return "\n".join(lines) + "\n"


def _lsmagic(ctx: CellContext, args: Namespace) -> None:
    ctx.print(_columns([(magic.usage, magic.summary) for magic in all_magics()], 48))


def magic_list() -> str:
    """What %help alone shows: each magic by name, with its summary."""
    rows = [(f"{INDENT}{'%%' if magic.cell else '%'}{magic.name}", magic.summary) for magic in all_magics()]
    return ("Magics (%help NAME says how to use one; %lsmagic shows their arguments):\n"
            + _columns(rows, max(len(left) for left, _ in rows) + 2))


def _help(ctx: CellContext, args: Namespace) -> None:
    if args.name is None:
        ctx.print(magic_list())
        return
    name = args.name.lstrip("%")
    found = forms(name)
    if not found:
        raise MagicError(f"no magic named {name}; %lsmagic lists them")
    ctx.print("\n".join(help_text(magic) for magic in found))


register(Magic("lsmagic", "list the magics", _lsmagic, LSMAGIC,
               doc="One line per magic: how it is written, and what it does.  %help NAME says more.",
               example="%lsmagic", text_only=True))
register(Magic("help", "list the magics, or show how to use one", _help, HELP,
               doc="""\
                   Alone, the list of magics with what each does.  With a name:
                   what the magic does, its arguments and an example.  A name with both
                   forms (%overlay and %%overlay) shows both.  In Jupyter, Shift-Tab on a
                   magic shows the same text, and Tab completes magics and their options.""",
               example="%help chroot", text_only=True))
