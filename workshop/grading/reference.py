"""The reference model: what an instructor's notebook says is graded.

Which checks exist, their names and their points come from the reference
notebook (cells matched by id); so do its tasks (where students work, with the
text they must leave around their solution regions), its locked and hidden
cells, and the targets it names itself."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..cell import cell_label, cell_name
from ..checks import CellChecks, Expectation, cell_checks, is_check_line, split_checks
from ..errors import CheckSyntaxError, GradingError, NoChecksError
from ..records import multiline_text
from ..tasks import CODE, answer_blocks, is_hidden, is_locked, is_task, manual_points, solution_regions
from ..text import tail
from .notebook import read_notebook_json


def workshop_meta(cell: dict) -> dict:
    """A cell's ``metadata.workshop`` (an empty dict when it has none or it is not an object)."""
    meta = (cell.get("metadata") or {}).get("workshop")
    return meta if isinstance(meta, dict) else {}


@dataclass
class RefCheck:
    key: str  # unique column name: "<cell label>:<check name>"
    cell_id: str
    label: str
    id: str  # within the cell: "expect:..." or "check:NAME"
    kind: str  # "expect" or "check"
    name: str
    points: float
    expectation: Expectation | None = None
    digest: str | None = None  # of a %%check script
    command: str = ""  # what runs: the cell's code or the check script
    hidden: bool = False  # %%check --hidden, or in a hidden cell: scored only by a rerun
    cell: str = ""  # the cell's name in reports: "cell 3 (id 1f0c2a9e)"


@dataclass
class RefCell:
    id: str
    index: int
    label: str
    source: str
    locked: bool
    checks: list[RefCheck] = field(default_factory=list)
    hidden: bool = False  # a cell of hidden checks, left out of the student copy
    name: str = ""  # in reports: "cell 3 (id 1f0c2a9e)"


@dataclass
class RefTask:
    """A cell where the student works: its checks (its own, and those of the
    hidden cells right after it) and the points a person gives by hand."""

    cell_id: str
    label: str
    kind: str  # "code" or "markdown"
    manual_points: float = 0.0
    checks: list[str] = field(default_factory=list)  # keys of its checks
    frame: list[list[str]] = field(default_factory=list)  # its fixed text around its solution regions (code)
    explanations: list[str] = field(default_factory=list)  # answer regions that explain it (feedback shows them)


@dataclass
class Reference:
    path: Path
    cells: list[RefCell]
    checks: list[RefCheck]
    targets: set[str] = field(default_factory=set)  # its own %target lines and metadata target
    tasks: list[RefTask] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # the ids of all its cells, in order
    answer_problems: list[str] = field(default_factory=list)  # answer regions that name no task of the notebook

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def hidden_points(self) -> float:
        return sum(c.points for c in self.checks if c.hidden)

    @property
    def manual_points(self) -> float:
        return sum(t.manual_points for t in self.tasks)


def _points(meta: dict, name: str, given: float | None) -> float:
    if given is not None:
        return given
    points = meta.get("points")
    if isinstance(points, dict):
        points = points.get(name)
    if isinstance(points, (int, float)) and not isinstance(points, bool) and points >= 0:
        return float(points)
    return 1.0


def load_reference(path: Path | str) -> Reference:
    """The checks (and locked cells) of an instructor's notebook; NoChecksError if it has none."""
    path = Path(path)
    return reference_of(read_notebook_json(path), path)


def reference_of(nb: dict, path: Path) -> Reference:
    """The reference a notebook (read as JSON) is; ``path`` names it in messages."""
    cells: list[RefCell] = []
    checks: list[RefCheck] = []
    tasks: list[RefTask] = []
    keys: set[str] = set()
    ordinals = {"code": 0, "markdown": 0}
    answers: list[tuple[int, int, str | None, str]] = []  # (cell number, tasks before it, task named, text)
    for index, cell in enumerate(nb["cells"]):
        kind = cell.get("cell_type")
        if kind not in ordinals:
            continue
        ordinals[kind] += 1
        task = _reference_task(path, cell, kind, ordinals[kind])
        tasks += [task] if task else []
        if kind == "markdown":
            answers += [(index + 1, len(tasks), name, text)
                        for name, text in answer_blocks(multiline_text(cell.get("source")))]
        ref_cell = _reference_cell(path, cell, index, ordinals["code"]) if kind == "code" else None
        if ref_cell is None:
            continue
        for check in ref_cell.checks:
            check.key = _unique_key(f"{ref_cell.label}:{check.name}", keys)
            checks.append(check)
            if tasks and (task or ref_cell.hidden):  # a hidden cell checks the task before it
                tasks[-1].checks.append(check.key)
        cells.append(ref_cell)
    if not checks and not tasks:
        raise NoChecksError(f"{path}: the reference has no checks (%expect or %%check); nothing to grade")
    targets = {line for cell in nb["cells"] if cell.get("cell_type") == "code"
               for line in target_lines(multiline_text(cell.get("source")))}
    spec = (nb.get("metadata", {}).get("workshop") or {}).get("target")
    order = [str(cell.get("id")) for cell in nb["cells"] if cell.get("id")]
    return Reference(path, cells, checks, targets | ({spec} if isinstance(spec, str) else set()), tasks, order,
                     _attach_answers(tasks, answers))


def _attach_answers(tasks: list[RefTask], answers: list[tuple[int, int, str | None, str]]) -> list[str]:
    """Give each answer region to the task it names (or, unnamed, to the nearest task
    at or above it); what names no task, one sentence each."""
    by_label = {task.label: task for task in tasks}
    problems = []
    for number, before, name, text in answers:
        task = by_label.get(name) if name else (tasks[before - 1] if before else None)
        if task is None:
            problems.append(f"cell {number}: the answer region names the task {name!r}, which the notebook does "
                            f"not have (tasks: {', '.join(by_label) or 'none'})" if name else
                            f"cell {number}: an answer region with no task above it; name the task it answers "
                            "(<!-- BEGIN ANSWER TASK -->)")
        else:
            task.explanations.append(text)
    return problems


def _reference_task(path: Path, cell: dict, kind: str, ordinal: int) -> RefTask | None:
    """The task a cell is, or None."""
    if not is_task(cell) or is_hidden(cell):
        return None
    if not cell.get("id"):
        raise GradingError(f"{path}: cells have no ids (notebook format 4.5 or later is needed)")
    given = workshop_meta(cell).get("name")
    label = cell_label(ordinal, str(given) if given else None) if kind == "code" else str(given or f"text {ordinal}")
    frame = solution_frame(multiline_text(cell.get("source"))) if kind == "code" else []
    return RefTask(cell["id"], label, kind, manual_points(cell), frame=frame)


def _reference_cell(path: Path, cell: dict, index: int, ordinal: int) -> RefCell | None:
    """The reference's view of one code cell, or None when it neither checks nor is locked."""
    source = multiline_text(cell.get("source"))
    meta = workshop_meta(cell)
    try:
        found = cell_checks(source)
    except CheckSyntaxError as exc:
        raise GradingError(f"{path}: code cell {ordinal}: {exc}") from None
    locked = is_locked(cell)
    if not found and not locked:
        return None
    cell_id = cell.get("id")
    if not cell_id:
        raise GradingError(f"{path}: cells have no ids (notebook format 4.5 or later is needed)")
    given = str(meta["name"]) if meta.get("name") else None
    label = cell_label(ordinal, given)
    ref_cell = RefCell(cell_id, index, label, source, locked, hidden=is_hidden(cell),
                       name=cell_name(ordinal, cell_id, given))
    ref_cell.checks = _reference_checks(found, meta, cell_id, label, source)
    for check in ref_cell.checks:
        check.hidden = check.hidden or ref_cell.hidden
        check.cell = ref_cell.name
    return ref_cell


def _reference_checks(found: CellChecks, meta: dict, cell_id: str, label: str, source: str) -> list[RefCheck]:
    # What an %expect checks is the cell's code without its check lines.
    code = "\n".join(line for line in split_checks(source)[0].split("\n")
                     if not line.strip().startswith("%expect"))
    checks = [RefCheck("", cell_id, label, exp.id, "expect", exp.name, _points(meta, exp.name, exp.points), exp,
                       command=code.strip(), hidden=exp.hidden)
              for exp in found.expectations]
    checks += [RefCheck("", cell_id, label, script.id, "check", script.name,
                        _points(meta, script.name, script.points), None, script.digest, command=script.script,
                        hidden=script.hidden)
               for script in found.scripts]
    return checks


def _unique_key(key: str, taken: set[str]) -> str:
    """``key``, or ``key#2``, ``key#3``... when a cell has two checks of the same name."""
    unique, n = key, 2
    while unique in taken:
        unique = f"{key}#{n}"
        n += 1
    taken.add(unique)
    return unique


# ---- the text a task leaves to the student -------------------------------------
_REGION = "\x00solution\x00"  # stands for a region while the frame is cut out; no cell holds it


def plain_lines(code: str) -> list[str]:
    """The lines that count when two versions of a task are compared: no blank ones, no trailing spaces."""
    return [line.rstrip() for line in code.split("\n") if line.strip()]


def solution_frame(source: str) -> list[list[str]]:
    """The text of a task cell a student must leave as it is: the lines before,
    between and after its solution regions (``n + 1`` chunks for ``n``
    regions), without its checks and blank lines; ``[]`` when it has no region."""
    lines = source.split("\n")
    regions, problems = solution_regions(lines, CODE)
    if problems or not regions:
        return []
    for start, end in reversed(regions):
        lines[start : end + 1] = [_REGION]
    chunks: list[list[str]] = [[]]
    for line in plain_lines(student_code("\n".join(lines))):
        if line == _REGION:
            chunks.append([])
        else:
            chunks[-1].append(line)
    return chunks if len(chunks) == len(regions) + 1 else []


def outside_edit(frame: list[list[str]], source: str) -> str | None:
    """What of ``frame`` the cell's ``source`` does not keep (a phrase), or None
    when everything outside the solution regions is as the student copy has it."""
    if not frame:
        return None
    lines = plain_lines(student_code(source))
    first, last = frame[0], frame[-1]
    for i, want in enumerate(first):
        if i >= len(lines) or lines[i] != want:
            return _changed(want, lines[i] if i < len(lines) else None, "above")
    tail_at = len(lines) - len(last)
    if tail_at < len(first):
        return _changed(last[0], None, "below")
    for i, want in enumerate(last):
        if lines[tail_at + i] != want:
            return _changed(want, lines[tail_at + i], "below")
    at = len(first)
    for chunk in frame[1:-1]:  # in order, each as early as it fits (the regions take any lines)
        found = next((k for k in range(at, tail_at - len(chunk) + 1) if lines[k : k + len(chunk)] == chunk), None)
        if found is None:
            return _changed(chunk[0], None, "between")
        at = found + len(chunk)
    return None


def _changed(want: str, got: str | None, where: str) -> str:
    side = {"above": "above the solution region", "below": "below the solution region",
            "between": "between the solution regions"}[where]
    now = f"; the cell has `{tail(got, 80)}` there" if got is not None else ""
    return f"the line `{tail(want, 80)}` {side} was changed or removed{now}"


def student_code(source: str) -> str:
    """A code cell as the student wrote it: without the %expect lines and %%check sections of the release."""
    code = split_checks_text(source)
    return "\n".join(line for line in code.split("\n") if not line.strip().startswith("%expect")).strip("\n")


def split_checks_text(source: str) -> str:
    """The code of a cell above its first %%check line (whatever the check lines say)."""
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if is_check_line(line):
            return "\n".join(lines[:i])
    return source


# ---- where the reference runs ----------------------------------------------------
_TARGET_LINE = re.compile(r"^[ \t]*%target[ \t]+(\S.*?)[ \t]*$", re.M)


def target_lines(source: str) -> list[str]:
    """The ``%target`` lines of a cell's source, as written."""
    return [f"%target {m.group(1)}" for m in _TARGET_LINE.finditer(source)]


__all__ = ["RefCell", "RefCheck", "RefTask", "Reference", "load_reference", "outside_edit", "plain_lines", "reference_of",
           "solution_frame", "student_code", "target_lines", "workshop_meta"]
