"""Magics: ``%name`` line magics and ``%%name`` cell magics.

Each magic is one module of this package that registers a :class:`Magic`
with its declared arguments (:class:`workshop.arguments.MagicArguments`);
:func:`load_all` imports every module of the package, so a new magic is a new
module.  A line magic's ``run(ctx, args)`` acts at once; a cell magic's
``run(ctx, args, body) -> str`` returns shell code that wraps ``body`` and may
register ``ctx.after`` hooks to report or clean up once it ran.  The cell
grammar (where magics may stand) is :mod:`workshop.cell`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..arguments import MagicArguments
from ..cell import MagicLine
from ..errors import MagicError

__all__ = ["Magic", "MagicArguments", "MagicError", "MagicLine", "all_magics", "arguments", "forms",
           "load_all", "lookup", "register"]


@dataclass
class Magic:
    name: str
    summary: str
    run: Callable[..., Any]
    arguments: MagicArguments
    cell: bool = False  # a cell magic (%%name) rather than a line magic
    doc: str = ""  # what it does, at more length, for %help NAME
    example: str = ""  # a short cell that uses it, for %help NAME
    usage_text: str = ""  # for magics with a grammar of their own (%expect), not options
    text_only: bool = False  # shows text and changes nothing (%help): a cell of these alone gets no badge

    @property
    def usage(self) -> str:
        return self.usage_text or self.arguments.usage_line()

    def parse(self, call: MagicLine) -> argparse.Namespace:
        return self.arguments.parse(call.args)

    def usage_error(self, problem: str) -> MagicError:
        """A MagicError that says what is wrong and shows the magic's usage."""
        return MagicError(f"{problem}\nusage: {self.usage}")


_FORMS: dict[tuple[str, bool], Magic] = {}  # (name, cell) -> magic: a name may have both forms


def arguments(name: str, cell: bool = False) -> MagicArguments:
    """A new parser for the magic written ``%name`` (or ``%%name``)."""
    return MagicArguments(("%%" if cell else "%") + name)


def register(magic: Magic) -> Magic:
    _FORMS[(magic.name, magic.cell)] = magic
    return magic


def all_magics() -> list[Magic]:
    """Every registered magic, line and cell forms, sorted line magics first."""
    return sorted(_FORMS.values(), key=lambda m: (m.cell, m.name))


def names() -> set[str]:
    return {name for name, _ in _FORMS}


def forms(name: str) -> list[Magic]:
    """The line and/or cell magic called ``name``."""
    return [m for m in (_FORMS.get((name, False)), _FORMS.get((name, True))) if m is not None]


def lookup(call: MagicLine) -> Magic:
    magic = _FORMS.get((call.name, call.cell))
    prefix = "%%" if call.cell else "%"
    if magic is None:
        other = _FORMS.get((call.name, not call.cell))
        if other is not None:
            right = "%%" if other.cell else "%"
            raise MagicError(f"{prefix}{call.name} is written {right}{call.name}; usage: {other.usage}")
        known = ", ".join(("%%" if m.cell else "%") + m.name for m in sorted(_FORMS.values(), key=lambda m: m.name))
        raise MagicError(f"unknown magic {prefix}{call.name}; known magics: {known} (see %lsmagic)")
    return magic


def load_all() -> None:
    """Import every module of this package, so each magic registers itself
    (a name starting with ``_`` is shared code, not a magic)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{info.name}")
