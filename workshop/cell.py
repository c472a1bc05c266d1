"""The cell grammar: declarations around commands.

One rule: **declarations (``%expect`` lines and ``%%check`` sections) stand
above or below the commands; the commands stand in between.**  A ``%%check``
section runs to the next ``%%check`` line or the end of the cell, so the
sections come last::

    %expect exit 0              declarations may open the cell...
    %timeout 30                 line magics that act (%target, %timeout, %rootfs...)
    %%cgroup --pids 10          cell magics, outermost first
    %%chroot rootfs
    ./munch                     the body: shell code (or data, for %%file)
    %expect stdout /munched/    ...or close it, right below the commands
    %%check --name munched      a check section runs to the next %%check or the end
    test -e rootfs/done

Blank and comment lines may stand anywhere among the declarations and the
magics.  What stays an error is what could be read two ways: a magic between
shell lines, or a line magic that acts written below the body (run as shell
code, a misplaced ``%%chroot`` would let its body run on the host).

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
# Line magics that declare what the cell must do rather than act: they may stand
# above or below the commands.
DECLARATIONS = frozenset({"expect"})


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


def is_declaration_line(line: str) -> bool:
    """A line magic that declares (``%expect ...``), not one that acts."""
    name = _MAGIC_NAME.match(line.strip())
    return bool(name) and not line.strip().startswith("%%") and name.group(1) in DECLARATIONS


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


def _declarations_below(lines: list[str]) -> tuple[list[str], list[str]]:
    """(the lines without the declarations that close them, those declarations).

    The closing block is the last run of declaration, blank and comment lines
    that holds a declaration; lines above its first declaration stay."""
    i = len(lines)
    first = None
    while i > 0:
        stripped = lines[i - 1].strip()
        if is_declaration_line(stripped):
            first = i - 1
        elif stripped and not stripped.startswith("#"):
            break
        i -= 1
    if first is None or not any(line.strip() and not line.strip().startswith(("#", "%")) for line in lines[:first]):
        return lines, []  # nothing but declarations and magics: they stand on top already
    below = [line.strip() for line in lines[first:] if is_declaration_line(line)]
    rest = lines[:first] + [line for line in lines[first:] if not is_declaration_line(line)]
    return rest, below


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
    Declarations (``%expect``) may also close the code, below the body: they
    join the line magics, after those written on top.
    With ``strict``, a magic written after the body has begun (any ``%%name``,
    or ``%name`` for a name in ``known``) is an error, not shell code: run as
    shell code, a misplaced ``%%chroot`` would let its body run on the host.
    """
    # Declarations below the commands are taken off the end: the lines above keep their numbers.
    lines, below = _declarations_below(code.split("\n"))
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
    line_magics += [parse_magic_line(line, cell=False) for line in below]
    if not line_magics and not cell_magics:
        return [], [], code
    return line_magics, cell_magics, "\n".join(lines[i:])


def _refuse_late_magics(lines: list[str], start: int, known: Collection[str]) -> None:
    for number, line in enumerate(lines[start:], start=start + 1):
        stripped = line.strip()
        name = _MAGIC_NAME.match(stripped)
        if name and name.group(1) in DECLARATIONS and not stripped.startswith("%%"):
            raise MagicError(
                f"line {number}: {stripped.split()[0]} stands between shell lines; declarations go above or "
                "below all of a cell's commands"
            )
        if name and (stripped.startswith("%%") or name.group(1) in known):
            raise MagicError(
                f"line {number}: {stripped.split()[0]} comes after shell code; move it to the top of the cell "
                "(only %expect lines and %%check sections may also stand below the commands)"
            )


def parse_cell(source: str, known: Collection[str] = (), strict: bool = True) -> Cell:
    """A whole cell: magics, body and check sections."""
    code, checks = split_checks(source)
    line_magics, cell_magics, body = split_cell(code, known, strict)
    return Cell(line_magics, cell_magics, body, checks)


# ---- naming cells -------------------------------------------------------------
def cell_label(number: int, name: str | None = None) -> str:
    """A code cell's short label, the first part of its checks' keys: its name
    (``metadata.workshop.name``) or ``cell N``, N its number among the
    notebook's code cells, counting from 1."""
    return name or f"cell {number}"


def cell_name(number: int, cell_id: str | None = None, name: str | None = None) -> str:
    """How every report names a code cell: ``cell 3 (id 1f0c2a9e)``, or
    ``hello (cell 3, id 1f0c2a9e)`` for a cell named hello in its metadata."""
    label = cell_label(number, name)
    where = [f"cell {number}"] if name else []
    where += [f"id {cell_id}"] if cell_id else []
    return f"{label} ({', '.join(where)})" if where else label
