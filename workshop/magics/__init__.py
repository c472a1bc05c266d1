"""Magics: lines starting with ``%`` (line magics) or ``%%`` (cell magics).

A cell is read top to bottom: leading ``%name args`` lines are line magics,
then consecutive ``%%name args`` lines are cell magics (outermost first), then
the body.  Each magic lives in its own module and registers itself here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import MagicError


@dataclass
class MagicCall:
    name: str
    args: list[str]
    line: str
    cell: bool  # True for %%name

    def __str__(self) -> str:
        return self.line


@dataclass
class Magic:
    """A magic.  A line magic's ``run(ctx, call)`` acts at once; a cell magic's
    ``run(ctx, call, body) -> str`` returns shell code that wraps ``body`` (it
    may register ``ctx.after`` hooks to report or clean up once it ran)."""

    name: str
    usage: str
    summary: str
    run: Callable[..., Any]
    cell: bool = False  # a cell magic (%%name) rather than a line magic
    doc: str = ""  # longer help for %help NAME


REGISTRY: dict[str, Magic] = {}  # by name; the first form registered under a name
_FORMS: dict[tuple[str, bool], Magic] = {}  # (name, cell) -> magic: a name may have both forms


def register(magic: Magic) -> Magic:
    REGISTRY.setdefault(magic.name, magic)
    _FORMS[(magic.name, magic.cell)] = magic
    return magic


def all_magics() -> list[Magic]:
    """Every registered magic, line and cell forms, sorted line magics first."""
    return sorted(_FORMS.values(), key=lambda m: (m.cell, m.name))


def forms(name: str) -> list[Magic]:
    """The line and/or cell magic called ``name``."""
    return [m for m in (_FORMS.get((name, False)), _FORMS.get((name, True))) if m is not None]


def usage_error(magic: Magic, problem: str) -> MagicError:
    """A MagicError that says what is wrong and shows the magic's usage."""
    return MagicError(f"{problem}\nusage: {magic.usage}")


def magic_state(kernel: Any, key: str, factory: Callable[[], Any]) -> Any:
    """Per-kernel state a magic keeps between cells (for example named snapshots)."""
    store = kernel.__dict__.setdefault("_magic_state", {})
    if key not in store:
        store[key] = factory()
    return store[key]


def split_cell(code: str, strict: bool = True) -> tuple[list[MagicCall], list[MagicCall], str]:
    """Split a cell into (line magics, cell magics, body).

    Blank and comment lines may come before and between the line magics and
    before the first cell magic; the body starts right below the last one.  A magic
    written after the body has begun is an error, not shell code: run as shell
    code, a misplaced ``%%chroot`` would let its body run on the host.
    """
    lines = code.split("\n")
    line_magics: list[MagicCall] = []
    cell_magics: list[MagicCall] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("%%"):
            cell_magics.append(_parse(stripped[2:], stripped, cell=True))
        elif cell_magics:
            break  # the body starts right below the cell magics, comments and all
        elif stripped.startswith("%"):
            line_magics.append(_parse(stripped[1:], stripped, cell=False))
        elif stripped and not stripped.startswith("#"):
            break
        i += 1
    # %%file's body is data, not code: it may hold anything
    check_body = strict and not any(call.name == "file" for call in cell_magics)
    for number, line in enumerate(lines[i:] if check_body else [], start=i + 1):
        stripped = line.strip()
        name = re.match(r"%%?([A-Za-z][\w-]*)", stripped)
        if name and (stripped.startswith("%%") or name.group(1) in REGISTRY):
            raise MagicError(
                f"line {number}: {stripped.split()[0]} comes after shell code; magics go at the top "
                "of the cell (line magics first, then cell magics, outermost first)"
            )
    if not line_magics and not cell_magics:
        return [], [], code
    return line_magics, cell_magics, "\n".join(lines[i:])


# Magics whose arguments are taken as written (a regex is not shell words).
RAW_ARGUMENTS = {"expect"}


def _parse(text: str, line: str, cell: bool) -> MagicCall:
    name, _, rest = text.partition(" ")
    if name.strip() in RAW_ARGUMENTS:
        return MagicCall(name=name.strip(), args=[rest.strip()] if rest.strip() else [], line=line, cell=cell)
    try:
        args = shlex.split(rest)
    except ValueError as exc:
        raise MagicError(f"{line}: {exc}; quote arguments as in the shell") from None
    return MagicCall(name=name.strip(), args=args, line=line, cell=cell)


def lookup(call: MagicCall) -> Magic:
    magic = _FORMS.get((call.name, call.cell))
    prefix = "%%" if call.cell else "%"
    if magic is None:
        other = _FORMS.get((call.name, not call.cell))
        if other is not None:
            right = "%%" if other.cell else "%"
            raise MagicError(f"{prefix}{call.name} is written {right}{call.name}; usage: {other.usage}")
        known = ", ".join(
            ("%%" if m.cell else "%") + m.name for m in sorted(_FORMS.values(), key=lambda m: m.name)
        )
        raise MagicError(f"unknown magic {prefix}{call.name}; known magics: {known} (see %lsmagic)")
    return magic


def load_all() -> None:
    """Import every magic module so each registers itself."""
    from . import cgroup as _cgroup  # noqa: F401
    from . import check as _check  # noqa: F401
    from . import chroot as _chroot  # noqa: F401
    from . import cleanup as _cleanup  # noqa: F401
    from . import expect as _expect  # noqa: F401
    from . import file as _file  # noqa: F401
    from . import help as _help  # noqa: F401
    from . import overlay as _overlay  # noqa: F401
    from . import rootfs as _rootfs  # noqa: F401
    from . import target as _target  # noqa: F401
    from . import timeout as _timeout  # noqa: F401
    from . import unshare as _unshare  # noqa: F401
