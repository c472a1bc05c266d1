"""The cell grammar: line magics, cell magics, the body and ``%%check`` sections.

A cell reads top to bottom::

    %expect exit 0              line magics (blank and comment lines may come between)
    %%cgroup --pids 10          cell magics, outermost first
    %%chroot rootfs
    ./munch                     the body: shell code (or data, for %%file)
    %%check --name munched      a check section runs to the next %%check or the end
    test -e rootfs/done

This module only splits text; it knows no magic's meaning.  The kernel, the
grader, the runner and the importer all read cells through it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from dataclasses import dataclass, field

from .errors import MagicError

# Magics whose arguments are taken as written: a regex is not shell words.
RAW_ARGUMENTS = frozenset({"expect"})
# Cell magics whose body is data, not shell code: it may hold anything.
DATA_BODIES = frozenset({"file"})
_MAGIC_NAME = re.compile(r"%%?([A-Za-z][\w-]*)")


@dataclass
class MagicLine:
    """One ``%name args`` or ``%%name args`` line."""

    name: str
    args: list[str]
    line: str
    cell: bool  # True for %%name

    def __str__(self) -> str:
        return self.line


@dataclass
class CheckSection:
    """A ``%%check ...`` line and the script below it."""

    line: str
    script: str


@dataclass
class Cell:
    line_magics: list[MagicLine] = field(default_factory=list)
    cell_magics: list[MagicLine] = field(default_factory=list)
    body: str = ""
    checks: list[CheckSection] = field(default_factory=list)

    @property
    def magics(self) -> list[MagicLine]:
        return self.line_magics + self.cell_magics


def is_check_line(line: str) -> bool:
    stripped = line.strip()
    return stripped == "%%check" or stripped.startswith(("%%check ", "%%check\t"))


def split_checks(code: str) -> tuple[str, list[CheckSection]]:
    """(the cell's code, the %%check sections written below it)."""
    if "%%check" not in code:
        return code, []
    lines = code.split("\n")
    starts = [i for i, line in enumerate(lines) if is_check_line(line)]
    if not starts:
        return code, []
    sections = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        sections.append(CheckSection(lines[start].strip(), "\n".join(lines[start + 1 : end]).strip("\n")))
    return "\n".join(lines[: starts[0]]), sections


def parse_magic_line(line: str, cell: bool) -> MagicLine:
    """``%name args`` (without its % or %%) -> MagicLine; args are shell words."""
    stripped = line.strip()
    name, _, rest = stripped.lstrip("%").partition(" ")
    name = name.strip()
    if name in RAW_ARGUMENTS:
        return MagicLine(name, [rest.strip()] if rest.strip() else [], stripped, cell)
    try:
        args = shlex.split(rest)
    except ValueError as exc:
        raise MagicError(f"{stripped}: {exc}; quote arguments as in the shell") from None
    return MagicLine(name, args, stripped, cell)


def split_cell(code: str, known: Collection[str] = (), strict: bool = True) -> tuple[
        list[MagicLine], list[MagicLine], str]:
    """Split a cell's code (checks already split off) into (line magics, cell
    magics, body).

    Blank and comment lines may come before and between the line magics and
    before the first cell magic; the body starts right below the last one.
    With ``strict``, a magic written after the body has begun (any ``%%name``,
    or ``%name`` for a name in ``known``) is an error, not shell code: run as
    shell code, a misplaced ``%%chroot`` would let its body run on the host.
    """
    lines = code.split("\n")
    line_magics: list[MagicLine] = []
    cell_magics: list[MagicLine] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("%%"):
            cell_magics.append(parse_magic_line(stripped, cell=True))
        elif cell_magics:
            break  # the body starts right below the cell magics, comments and all
        elif stripped.startswith("%"):
            line_magics.append(parse_magic_line(stripped, cell=False))
        elif stripped and not stripped.startswith("#"):
            break
        i += 1
    if strict and not any(m.name in DATA_BODIES for m in cell_magics):
        _refuse_late_magics(lines, i, known)
    if not line_magics and not cell_magics:
        return [], [], code
    return line_magics, cell_magics, "\n".join(lines[i:])


def _refuse_late_magics(lines: list[str], start: int, known: Collection[str]) -> None:
    for number, line in enumerate(lines[start:], start=start + 1):
        stripped = line.strip()
        name = _MAGIC_NAME.match(stripped)
        if name and (stripped.startswith("%%") or name.group(1) in known):
            raise MagicError(
                f"line {number}: {stripped.split()[0]} comes after shell code; magics go at the top "
                "of the cell (line magics first, then cell magics, outermost first)"
            )


def parse_cell(source: str, known: Collection[str] = (), strict: bool = True) -> Cell:
    """A whole cell: magics, body and check sections."""
    code, checks = split_checks(source)
    line_magics, cell_magics, body = split_cell(code, known, strict)
    return Cell(line_magics, cell_magics, body, checks)
