"""%lsmagic and %help NAME."""

from __future__ import annotations

from . import Magic, MagicCall, MagicError, all_magics, forms, register


def _lsmagic(ctx, call: MagicCall) -> None:
    if call.args:
        raise MagicError("usage: %lsmagic (takes no arguments)")
    lines = []
    for magic in all_magics():
        lines.append(f"{magic.usage:<48} {magic.summary}")
    ctx.print("\n".join(lines) + "\n")


def _help(ctx, call: MagicCall) -> None:
    if len(call.args) != 1:
        raise MagicError("usage: %help NAME (for example %help target)")
    name = call.args[0].lstrip("%")
    found = forms(name)
    if not found:
        raise MagicError(f"no magic named {name}; %lsmagic lists them")
    ctx.print("".join(magic.doc or f"{magic.usage}\n    {magic.summary}\n" for magic in found))


register(Magic("lsmagic", "%lsmagic", "list the magics", _lsmagic))
register(Magic("help", "%help NAME", "show how to use a magic", _help))
