"""Grading one executed notebook against a reference notebook (pure: notebook data in, plain data out).

Which checks exist, their names and their points come from the instructor's
reference notebook (cells matched by id); results come from each submission's
records.  ``%expect`` checks are evaluated again on the outputs saved in the
submission; ``%%check`` results are taken from the record when the script that
ran is the reference's own (same digest).  A submission cannot pass by deleting
or editing checks, and these are flagged:

- ``unreadable``: the file is not a notebook for this kernel
- ``cell-missing``: a cell with checks was deleted
- ``record-missing``: a cell with checks has no record (not run, or outputs cleared)
- ``record-moved``: the record belongs to another cell (it names that cell, or
  the code that ran is another cell's)
- ``record-duplicated`` / ``cell-id-duplicated``: two cells carry the same run's
  record, or the same id
- ``record-unmatched``: the record names no cell (nbconvert and papermill send
  no cell id) and the code that ran is not the cell's
- ``edited-after-run``: the cell's source changed after it ran (for the instructor)
- ``output-edited``: the shown stdout/stderr differ from the record's digests
- ``output-truncated-by-client``: the shown output is a verified prefix of what
  ran (a Jupyter server's rate limit dropped the rest); checks count from the record
- ``framing-forged``: the kernel saw a forged end of a cell while this one ran,
  so its output may hold another cell's
- ``check-removed`` / ``check-edited``: a check of the reference is missing
  from the cell, or its script differs
- ``locked-changed``: the source of a locked cell (``metadata.workshop.locked``
  or nbgrader's ``editable: false``) differs from the reference
- ``system-tampered``: in a rerun, the VM's agent saw the student's code change
  what checks depend on (a program, a library, ``/etc/ld.so.preload``, a mount
  over ``/usr`` or ``/proc``...) before this cell's checks ran, or after the last
  cell (then for the whole submission); its message says what was changed
- ``edited-outside-solution``: the text of a code task outside its solution
  regions (a ``%%chroot`` line above the region, say) differs from the
  student copy's; blank lines and spaces at the ends of lines do not count
- ``sessions``: checked cells ran in more than one kernel session
- ``out-of-order``: checked cells ran in another order than the notebook's

Checks of a cell flagged ``record-missing``, ``record-moved``,
``record-duplicated``, ``cell-id-duplicated``, ``record-unmatched``,
``output-edited``, ``framing-forged``, ``system-tampered`` or ``locked-changed`` earn no points,
and neither do the checks of a task flagged ``edited-outside-solution`` (its
hidden cells' too); the other flags are for the instructor.

Notebooks are read as plain JSON (not validated by nbformat) so that a class
of a thousand submissions grades in seconds.  Grading many submissions, reruns
and executors live in :mod:`workshop.batch`; the reports in :mod:`workshop.reports`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .cell import cell_label, cell_name
from .checks import (
    CellChecks,
    Expectation,
    cell_checks,
    describe_changes,
    evaluate,
    is_check_line,
    split_checks,
    without_hidden_checks,
)
from .errors import CheckSyntaxError, GradingError, NoChecksError
from .records import (
    RECORD_MIME,
    cell_record,
    cell_streams,
    classify_streams,
    multiline_text,
    sha256_text,
    stream_matches,
)
from .tasks import CODE, answer_blocks, is_hidden, is_locked, is_task, manual_points, solution_regions
from .text import tail

TAIL = 3000  # characters of a failing cell's output kept for the report
MAX_NOTEBOOK_BYTES = 100 * 2**20  # larger files are refused unread: no real submission comes near
MAX_DEPTH = 64  # a notebook's JSON is about 10 levels deep; deeper is a file built to hurt a parser
# What one notebook may cost the grader: parsed JSON takes up to some 140 bytes per value, so the number of
# values (told by the commas and brackets, before parsing) bounds its memory (under 300 MB).  The shipped
# notebooks have under 100 cells and a few thousand values; `seq 1000000` in a cell saves a million lines.
MAX_CELLS = 10_000
MAX_JSON_VALUES = 2_000_000


# ---- reading notebooks -------------------------------------------------------
def display_path(path: Path | str) -> str:
    """A path as text every report can hold: bytes of a name that are not UTF-8 become U+FFFD."""
    return os.fsencode(str(path)).decode("utf-8", "replace")


def read_notebook_json(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES, *, name: str | None = None) -> dict:
    """Read a notebook as plain JSON with the checks that matter for grading.

    Whatever the file is, the outcome is a notebook or a GradingError whose
    message is one sentence: FIFOs and devices are refused without being
    opened for reading, huge files without being read, and numbers JSON cannot
    carry (1e400, NaN), nesting no notebook has, or objects of the wrong type
    where the grader reads are refused by name.  ``name``: what messages call
    the file (the submission a temporary copy was made of)."""
    shown = display_path(path)
    if shown != str(path) and name is None:
        raise GradingError(f"{shown}: the file name is not valid UTF-8; rename the file and grade it again")
    shown = name or shown
    nb = _parse_json(_bounded(_read_regular_file(Path(path), shown, max_bytes), shown), shown)
    return check_notebook(nb, shown)


def check_notebook(nb, shown: str) -> dict:
    """``nb`` (parsed JSON) when it is a notebook the grader can read; else a GradingError naming ``shown``."""
    problem = _format_problem(nb, shown) or _depth_problem(nb) or _structure_problem(nb)
    if problem:
        raise GradingError(f"{shown}: {problem}")
    if len(nb["cells"]) > MAX_CELLS:
        raise GradingError(f"{shown}: has {len(nb['cells']):,} cells, over the limit of {MAX_CELLS:,} for a notebook; "
                           "refused without grading it")
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel and kernel != "workshop":
        raise GradingError(f"{shown}: a notebook for the '{kernel}' kernel, not 'workshop'")
    return nb


_KINDS = [(stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket")]


def _read_regular_file(path: Path, shown: str, max_bytes: int) -> bytes:
    """The bytes of a regular file; anything else is refused before it is opened for reading."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise GradingError(f"{shown}: no such file") from None
    except OSError as exc:
        raise GradingError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise GradingError(f"{shown}: is a directory, not a notebook")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "special file")
        raise GradingError(f"{shown}: is a {kind}, not a notebook file; refused without reading it")
    if info.st_size > max_bytes:
        raise GradingError(f"{shown}: {_mib(info.st_size)} is over the {_mib(max_bytes)} limit for a notebook; "
                           "refused without reading it")
    try:
        # O_NONBLOCK: should the file have been swapped for a FIFO since stat(), open() still returns
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise GradingError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise GradingError(f"{shown}: the file changed while it was opened; grade it again")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise GradingError(f"{shown}: over the {_mib(max_bytes)} limit for a notebook")
    return data


def _bounded(data: bytes, shown: str) -> bytes:
    """``data``, when parsing it costs the grader a bounded amount of memory and time.

    Counted in the bytes, unparsed: every cell has one ``"cell_type"`` key (the
    text cannot occur inside a JSON string, where quotes are escaped), and
    every value but the first follows a comma or opens a bracket."""
    cells = data.count(b'"cell_type"')
    if cells > MAX_CELLS:
        raise GradingError(f"{shown}: has {cells:,} cells, over the limit of {MAX_CELLS:,} for a notebook; "
                           "refused without grading it")
    values = data.count(b",") + data.count(b"[") + data.count(b"{")
    if values > MAX_JSON_VALUES:
        raise GradingError(f"{shown}: has some {values:,} JSON values, over the limit of {MAX_JSON_VALUES:,} "
                           "for a notebook; refused without grading it")
    return data


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size} bytes"


class _BadNumber(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(text)
    return value


def _constant(name: str):
    raise _BadNumber(name)


def _parse_json(data: bytes, shown: str):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GradingError(f"{shown}: not a readable notebook (not UTF-8 text: byte {exc.start})") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_constant)
    except _BadNumber as exc:
        raise GradingError(f"{shown}: holds the number {str(exc)[:20]}, which is not finite; "
                           "no notebook the kernel saved has one") from None
    except RecursionError:
        raise GradingError(f"{shown}: nested too deeply to be a notebook") from None
    except json.JSONDecodeError as exc:
        raise GradingError(f"{shown}: not a readable notebook (invalid JSON: {exc})") from None
    except ValueError:  # an integer of thousands of digits
        raise GradingError(f"{shown}: holds a number with more digits than Python reads; "
                           "no notebook the kernel saved has one") from None


def _format_problem(nb, shown: str) -> str | None:
    if not isinstance(nb, dict):
        return f"not a notebook (the file holds a JSON {type(nb).__name__}, not an object)"
    version = nb.get("nbformat")
    if version in (1, 2, 3) or "worksheets" in nb:
        return (f"a notebook in format {version if isinstance(version, int) else 3}, which has no list of cells; "
                f"convert it with `jupyter nbconvert --to notebook --nbformat 4 '{shown}'` and grade the result")
    if not isinstance(nb.get("cells"), list):
        return "not a notebook (no list of cells)"
    if version != 4:
        return f"notebook format {str(version)[:20]} is not supported (need 4)"
    return None


def _depth_problem(nb) -> str | None:
    stack = [(nb, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep, too deep to be a notebook"
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return None


def _is_text(value) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))


def _structure_problem(nb: dict) -> str | None:
    """What is of the wrong type where the grader reads, as a phrase, or None."""
    meta = nb.get("metadata", {})
    if not isinstance(meta, dict):
        return "its metadata is not an object"
    for key in ("kernelspec", "workshop"):
        if not isinstance(meta.get(key, {}), dict):
            return f"metadata.{key} is not an object"
    for number, cell in enumerate(nb["cells"], 1):
        problem = _cell_problem(cell)
        if problem:
            return f"cell {number} {problem}"
    return None


def _cell_problem(cell) -> str | None:
    if not isinstance(cell, dict):
        return "is not an object"
    if not isinstance(cell.get("id", ""), str) or not isinstance(cell.get("cell_type", ""), str):
        return "has an id or type that is not text"
    if not isinstance(cell.get("metadata", {}), dict):
        return "has metadata that is not an object"
    if not _is_text(cell.get("source", "")):
        return "has a source that is not text"
    outputs = cell.get("outputs", [])
    if not isinstance(outputs, list):
        return "has outputs that are not a list"
    for output in outputs:
        problem = _output_problem(output)
        if problem:
            return f"has an output that {problem}"
    return None


def _output_problem(output) -> str | None:
    if not isinstance(output, dict):
        return "is not an object"
    if not isinstance(output.get("output_type", ""), str) or not isinstance(output.get("name", ""), str):
        return "has a type or name that is not text"
    if not _is_text(output.get("text", "")):
        return "has text that is not text"
    data = output.get("data", {})
    if not isinstance(data, dict):
        return "has data that is not an object"
    return _record_problem(data[RECORD_MIME]) if RECORD_MIME in data else None


_RECORD_FIELDS = {"exit_status": int, "execution_count": int, "session": str, "cell_id": str,
                  "source_digest": str, "status": str}


def _record_problem(record) -> str | None:
    if not isinstance(record, dict):
        return "carries a record that is not an object"
    for key, kind in _RECORD_FIELDS.items():
        value = record.get(key)
        if value is None and key != "exit_status":
            continue
        if key in record and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"carries a record whose {key} is not {'a whole number' if kind is int else 'text'}"
    for key in ("stdout", "stderr"):
        if not isinstance(record.get(key) or {}, dict):
            return f"carries a record whose {key} is not an object"
    checks = record.get("checks", [])
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        return "carries a record whose checks are not a list of objects"
    return None


def _workshop_meta(cell: dict) -> dict:
    meta = (cell.get("metadata") or {}).get("workshop")
    return meta if isinstance(meta, dict) else {}


# ---- the reference -----------------------------------------------------------
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
               for line in _target_lines(multiline_text(cell.get("source")))}
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
    given = _workshop_meta(cell).get("name")
    label = cell_label(ordinal, str(given) if given else None) if kind == "code" else str(given or f"text {ordinal}")
    frame = solution_frame(multiline_text(cell.get("source"))) if kind == "code" else []
    return RefTask(cell["id"], label, kind, manual_points(cell), frame=frame)


def _reference_cell(path: Path, cell: dict, index: int, ordinal: int) -> RefCell | None:
    """The reference's view of one code cell, or None when it neither checks nor is locked."""
    source = multiline_text(cell.get("source"))
    meta = _workshop_meta(cell)
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


# ---- grading one submission --------------------------------------------------
def _flag(flags: list[dict], kind: str, cell: str | None, message: str, for_student: str | None = None) -> None:
    """A flag; ``for_student``: what a student's own feedback page says instead of ``message``, when
    the message is for instructors only (it names other students)."""
    flag = {"kind": kind, "cell": cell, "message": message}
    if for_student:
        flag["for_student"] = for_student
    flags.append(flag)


def grade_submission(ref: Reference, path: Path | str, student: str | None = None, *,
                     score_hidden: bool = False, notebook: dict | None = None, name: str | None = None) -> dict:
    """Grade one executed notebook; the result is plain data (JSON, pickle).

    Hidden checks are not in a student's copy, so a student's own run cannot
    have run them: they are entered as ``needs-rerun`` (no points, and saying
    why) unless ``score_hidden``, for a run the grader made itself with the
    reference's checks put back (a rerun, or ``workshop run`` of the reference).

    ``notebook``: the notebook, already read (``path`` names it); ``name``:
    what the result and its messages call the file, when ``path`` is a copy
    (a rerun's executed notebook is named after the submission).

    A malformed notebook or record scores nothing and says so; it never stops
    the grading of the others."""
    shown = name or display_path(path)
    try:
        return _grade_submission(ref, Path(path), student, score_hidden, notebook, name)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError, RecursionError) as exc:
        why = " ".join(str(exc).split())[:200]
        return _unreadable(ref, Path(path), student, f"{shown}: the notebook or one of its records "
                                                     f"is malformed ({type(exc).__name__}: {why})", name)


def _empty_result(ref: Reference, path: Path, student: str | None, error: str | None = None,
                  name: str | None = None) -> dict:
    return {
        "student": student or display_path(path.stem),
        "path": name or display_path(path),
        "error": error,
        "total": 0.0,
        "max": ref.max_points,
        "checks": {},
        "flags": [],
        "cells": {},
        "answers": {},  # the student's own text of each task
        "manual": {t.label: t.manual_points for t in ref.tasks if t.manual_points},  # points to give by hand
    }


def _unreadable(ref: Reference, path: Path, student: str | None, message: str, name: str | None = None) -> dict:
    result = _empty_result(ref, path, student, message, name)
    _flag(result["flags"], "unreadable", None, message)
    for check in ref.checks:
        result["checks"][check.key] = _check_entry(check, False, "the notebook could not be read", "missing")
    return result


def _grade_submission(ref: Reference, path: Path, student: str | None, score_hidden: bool,
                      notebook: dict | None, name: str | None) -> dict:
    try:
        nb = read_notebook_json(path, name=name) if notebook is None else check_notebook(notebook, name or str(path))
    except GradingError as exc:
        return _unreadable(ref, path, student, str(exc), name)
    result = _empty_result(ref, path, student, None, name)
    result["evidence"] = run_evidence(nb)
    result["answers"] = task_answers(ref, nb)
    by_id = {cell.get("id"): cell for cell in nb["cells"] if cell.get("cell_type") == "code" and cell.get("id")}
    positions = {cell.get("id"): i for i, cell in enumerate(nb["cells"])}
    submitted = _Submitted.of(nb)
    ran: list[tuple[int, str, dict]] = []  # (position in submission, label, record) of checked cells
    for ref_cell in ref.cells:
        if ref_cell.hidden and not score_hidden:  # not in the student's copy: nothing to look at
            result["checks"].update((check.key, _needs_rerun(check)) for check in ref_cell.checks)
            continue
        cell = by_id.get(ref_cell.id)
        if cell is None:
            _flag(result["flags"], "cell-missing", ref_cell.name, "the cell was deleted")
            for check in ref_cell.checks:
                result["checks"][check.key] = _check_entry(check, False, "the cell was deleted", "missing")
            continue
        record = _grade_cell(result, ref_cell, cell, submitted, score_hidden)
        if record is not None:
            ran.append((positions.get(ref_cell.id, 0), ref_cell.name, record))
    _order_flags(ran, result["flags"])
    _outside_solution_flags(ref, nb, result)
    result["total"] = sum(c["earned"] for c in result["checks"].values())
    return result


# ---- the text of a task around its solution regions ----------------------------
_REGION = "\x00solution\x00"  # stands for a region while the frame is cut out; no cell holds it


def _plain_lines(code: str) -> list[str]:
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
    for line in _plain_lines(student_code("\n".join(lines))):
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
    lines = _plain_lines(student_code(source))
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


def _outside_solution_flags(ref: Reference, nb: dict, result: dict) -> None:
    """Flag each code task whose text outside its solution regions is not the student
    copy's (the lines the student was to leave, a ``%%chroot`` say); its checks earn nothing."""
    by_id = {cell.get("id"): cell for cell in nb["cells"] if cell.get("cell_type") == "code" and cell.get("id")}
    checks = {check.key: check for check in ref.checks}
    names = {cell.id: cell.name for cell in ref.cells}
    for task in ref.tasks:
        cell = by_id.get(task.cell_id)
        edit = outside_edit(task.frame, multiline_text(cell.get("source"))) if cell is not None else None
        if edit is None:
            continue
        _flag(result["flags"], "edited-outside-solution", names.get(task.cell_id) or task.label,
              f"{edit}: only the solution region is the student's to write")
        for key in task.checks:
            result["checks"][key] = _check_entry(checks[key], False, "the task was edited outside its solution "
                                                                     "region", "invalid")


@dataclass
class _Submitted:
    """What ties a record to its cell, across one submission's code cells."""

    sources: dict[str, set[str]]  # digest of a cell's source -> the ids of the cells with that source
    ids: dict[str, int]  # cell id -> how many code cells carry it
    runs: dict[tuple, list[str]]  # (kernel session, execution count) -> the ids of the cells whose record it is

    @classmethod
    def of(cls, nb: dict) -> _Submitted:
        sources: dict[str, set[str]] = {}
        ids: dict[str, int] = {}
        runs: dict[tuple, list[str]] = {}
        for cell in nb["cells"]:
            if cell.get("cell_type") != "code":
                continue
            cell_id = str(cell.get("id") or "")
            ids[cell_id] = ids.get(cell_id, 0) + 1
            sources.setdefault(sha256_text(multiline_text(cell.get("source"))), set()).add(cell_id)
            record = cell_record(cell)
            if record and record.get("session") and record.get("execution_count") is not None:
                runs.setdefault((record["session"], record["execution_count"]), []).append(cell_id)
        return cls(sources, ids, runs)


def _grade_cell(result: dict, ref_cell: RefCell, cell: dict, submitted: _Submitted,
                score_hidden: bool = False) -> dict | None:
    """Flag one submitted cell and enter its checks' results; the record its checks were graded on."""
    flags: list[dict] = result["flags"]
    source = multiline_text(cell.get("source"))
    record = cell_record(cell)
    zero = _locked_changed(flags, ref_cell, source, record)  # why this cell's checks earn nothing
    if not ref_cell.checks:
        return None
    if record is None:
        _flag(flags, "record-missing", ref_cell.name, "no record: the cell was not run or its outputs were cleared")
        zero = zero or "the cell has no record (not run?)"
        stdout = stderr = ""
        cut = False
    else:
        stdout, stderr = cell_streams(cell)
        untrusted, cut = _untrusted_record(flags, ref_cell, record, stdout, stderr)  # flags even when zero is set
        zero = _record_elsewhere(flags, ref_cell, source, record, submitted) or zero or untrusted
    recorded = {c.get("id"): c for c in (record or {}).get("checks", []) if isinstance(c, dict)}
    failing = False
    for check in ref_cell.checks:
        if check.hidden and not score_hidden:
            result["checks"][check.key] = _needs_rerun(check)
            continue
        entry = _grade_check(flags, check, record, recorded.get(check.id), zero, None if cut else (stdout, stderr))
        failing = failing or not entry["passed"]
        result["checks"][check.key] = entry
    if failing:
        result["cells"][ref_cell.label] = {
            "name": ref_cell.name,
            "exit_status": record.get("exit_status") if record else None,
            "stdout": tail(stdout, TAIL),
            "stderr": tail(stderr, TAIL),
            "source": tail(source, TAIL),
        }
    return record


def _locked_changed(flags: list[dict], ref_cell: RefCell, source: str, record: dict | None) -> str | None:
    """Flag a locked cell whose source (shown, or as it ran) is not the reference's."""
    if not ref_cell.locked:
        return None
    run_digest = record.get("source_digest") if record else None
    # the student copy leaves out its hidden checks; a rerun puts them back
    allowed = {ref_cell.source, without_hidden_checks(ref_cell.source)}
    if source not in allowed or (run_digest and run_digest not in {sha256_text(text) for text in allowed}):
        _flag(flags, "locked-changed", ref_cell.name, "the source of a locked cell was changed")
        return "the locked cell was changed"
    return None


def _record_elsewhere(flags: list[dict], ref_cell: RefCell, source: str, record: dict,
                      submitted: _Submitted) -> str | None:
    """Flag a record that may be another cell's; why the cell earns nothing, or None.

    A record's cell id is null when the client sent none (nbconvert, papermill),
    and a student can copy or forge it; the digest of the source that ran is
    what ties a record to its cell then.  A record of another cell's code, of
    no cell's code when it names none, carried by two cells, or a cell id two
    cells carry, earns nothing."""
    name = ref_cell.name
    if submitted.ids.get(ref_cell.id, 0) > 1:
        _flag(flags, "cell-id-duplicated", name, f"{submitted.ids[ref_cell.id]} cells carry the id {ref_cell.id}")
        return "several cells carry this cell's id, so which one ran is unknown"
    copies = submitted.runs.get((record.get("session"), record.get("execution_count")), [])
    if len(copies) > 1:
        _flag(flags, "record-duplicated", name, f"the same run's record is in {len(copies)} cells")
        return "the record is also in another cell: one of them is a copy"
    ran = record.get("source_digest")
    if not isinstance(ran, str) or not ran or ran == sha256_text(source):
        return None
    others = sorted(i for i in submitted.sources.get(ran, set()) if i != ref_cell.id)
    if others:
        _flag(flags, "record-moved", name, f"the record is of the code of cell id {others[0]}")
        return "the record is of another cell's code"
    if not record.get("cell_id"):
        _flag(flags, "record-unmatched", name, "the record names no cell and its code is not this cell's")
        return "the record cannot be tied to this cell"
    _flag(flags, "edited-after-run", name, "the cell's source was changed after it ran")
    return None


def _untrusted_record(flags: list[dict], ref_cell: RefCell, record: dict, stdout: str,
                      stderr: str) -> tuple[str | None, bool]:
    """Flag a record of another cell and shown output that is not what ran; why nothing is earned,
    and whether a client kept only a verified prefix of the output (the record's results count)."""
    label = ref_cell.name
    zero = None
    if record.get("cell_id") and record.get("cell_id") != ref_cell.id:
        _flag(flags, "record-moved", label, f"the record belongs to cell {record.get('cell_id')}")
        zero = "the record belongs to another cell"
    framing = record.get("framing")
    if framing:  # the kernel saw a forged end of a cell: this cell's output may be another's
        _flag(flags, "framing-forged", label, f"the kernel reports: {framing}")
        zero = zero or f"the cell's framing was tampered with ({framing})"
    tampered = record.get("tampered")
    if tampered:  # a sealed VM's agent saw the system changed before this cell's checks ran
        changes = [str(c) for c in tampered] if isinstance(tampered, list) else [str(tampered)]
        _flag(flags, "system-tampered", label, "; ".join(changes[:5]) + (" …" if len(changes) > 5 else ""))
        zero = zero or describe_changes(changes)
    verdicts = classify_streams(record, stdout, stderr)
    edited = [name for name, verdict in verdicts.items() if verdict.kind == "edited"]
    cut = [verdict.describe(name) for name, verdict in verdicts.items() if verdict.kind == "truncated"]
    if edited:
        _flag(flags, "output-edited", label, f"shown {' and '.join(edited)} differ from the record")
        zero = zero or f"the shown {' and '.join(edited)} was edited after the run"
    elif cut:  # not the student's doing: a client (a Jupyter server's rate limit) dropped output
        _flag(flags, "output-truncated-by-client", label, "; ".join(cut) + "; checks graded from the record")
    return zero, bool(cut) and not edited


def _grade_check(flags: list[dict], check: RefCheck, record: dict | None, got: dict | None, zero: str | None,
                 streams: tuple[str, str] | None) -> dict:
    """One check's entry: evaluated again (%expect) or taken from the record (%%check, same script;
    %expect too when ``streams`` is None: the saved output is only a verified prefix)."""
    if got is None and record is not None:
        _flag(flags, "check-removed", check.cell, f"the check '{check.name}' is not in the cell's record")
    if zero:
        return _check_entry(check, False, zero, "invalid")
    if check.kind == "expect" and streams is not None:  # record is set: a missing record means zero
        passed, message, shown = evaluate(check.expectation, int(record.get("exit_status", -1)), *streams)
        return _check_entry(check, passed, message, "passed" if passed else "failed", shown)
    if got is None:
        return _check_entry(check, False, "the check did not run (removed from the cell?)", "missing")
    if check.kind == "check" and got.get("digest") != check.digest:
        _flag(flags, "check-edited", check.cell, f"the script of check '{check.name}' was changed")
        return _check_entry(check, False, "the check script differs from the reference", "invalid")
    passed = bool(got.get("passed"))
    return _check_entry(check, passed, str(got.get("message") or ""), "passed" if passed else "failed",
                        str(got.get("output") or got.get("got") or ""))


def _order_flags(ran: list[tuple[int, str, dict]], flags: list[dict]) -> None:
    sessions = {r.get("session") for _, _, r in ran}
    if len(sessions) > 1:
        _flag(flags, "sessions", None,
              f"checked cells ran in {len(sessions)} different kernel sessions (the kernel was restarted between them)")
    ran = sorted(ran, key=lambda item: item[0])
    late = []
    for (_, label_a, a), (_, label_b, b) in zip(ran, ran[1:], strict=False):
        if a.get("session") == b.get("session") and (a.get("execution_count") or 0) >= (b.get("execution_count") or 0):
            late.append(f"{label_a} (#{a.get('execution_count')}) ran after {label_b} (#{b.get('execution_count')})")
    if late:
        _flag(flags, "out-of-order", None, "cells ran out of order: " + "; ".join(late[:5]))


def _check_entry(check: RefCheck, passed: bool, message: str, status: str, got: str = "") -> dict:
    return {
        "passed": passed,
        "status": status,
        "earned": check.points if passed else 0.0,
        "points": check.points,
        "message": message,
        "expected": check.expectation.describe() if check.expectation else "the check script passes",
        "got": got,
        "hidden": check.hidden,
    }


NEEDS_RERUN = "needs-rerun"


def _needs_rerun(check: RefCheck) -> dict:
    """A hidden check graded from a student's own run: not judged, and saying why."""
    return _check_entry(check, False, "a hidden check: scored only when the submission runs again "
                                      "(workshop grade --rerun)", NEEDS_RERUN)


# ---- what the student wrote ----------------------------------------------------
ANSWER_KEEP = 20000  # characters of a task's text kept for the feedback page


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


def task_answers(ref: Reference, nb: dict) -> dict[str, str | None]:
    """The student's own text of each task (None: the cell was deleted)."""
    by_id = {cell.get("id"): cell for cell in nb["cells"] if cell.get("id")}
    answers: dict[str, str | None] = {}
    for task in ref.tasks:
        cell = by_id.get(task.cell_id)
        if cell is None:
            answers[task.label] = None
            continue
        text = multiline_text(cell.get("source"))
        answers[task.label] = tail(student_code(text) if task.kind == "code" else text, ANSWER_KEEP)
    return answers


# ---- what ties a submission to a run: sessions, records, outputs ----------------
def run_evidence(nb: dict) -> dict:
    """What ties a notebook to the run that made it, for finding copies across a class.

    ``sessions`` and ``records`` (the kernel sessions its records name, a
    digest of each record) tie copies that kept their ids: a session id is
    random and a record holds its start time to the millisecond.  The rest is
    what a copier cannot cheaply make unique: ``outputs`` (per cell, keyed by
    the digest of the student's code and its occurrence, a digest of the
    digests of what the cell printed: the times, process ids, inode numbers and
    random values a run prints differ between honest runs), ``sources`` (a
    digest of the set of code that ran) and ``sequence`` (a digest of the run's
    order: which code ran with which execution count and exit status)."""
    sessions: set[str] = set()
    records: set[str] = set()
    outputs: dict[str, str] = {}
    ran: list[list] = []
    seen: dict[str, int] = {}
    for cell in nb["cells"]:
        record = cell_record(cell) if cell.get("cell_type") == "code" else None
        if not record:
            continue
        if isinstance(record.get("session"), str) and record["session"]:
            sessions.add(record["session"])
        canonical = json.dumps(record, sort_keys=True, ensure_ascii=True)
        records.add("sha256:" + hashlib.sha256(canonical.encode()).hexdigest())
        code = _short(student_code(multiline_text(cell.get("source"))))
        seen[code] = seen.get(code, 0) + 1
        printed = [str((record.get(name) or {}).get("digest") or "") for name in ("stdout", "stderr")]
        if any(printed):
            outputs[f"{code}#{seen[code]}"] = _short(" ".join(printed))
        ran.append([str(record.get("source_digest") or ""), record.get("execution_count"), record.get("exit_status")])
    return {"sessions": sorted(sessions), "records": sorted(records), "outputs": outputs,
            "sources": _short(" ".join(sorted({digest for digest, _, _ in ran}))) if ran else "",
            "sequence": _short(json.dumps(ran)) if ran else ""}


def _short(text: str) -> str:
    """A digest short enough to hold per cell, long enough that nothing collides by chance."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


SIMILAR = 0.9  # a pair at least this similar, on at least MIN_EVIDENCE cells' worth of rare values, is flagged
MIN_EVIDENCE = 2.0
RARE = 20  # values held by more submissions than this suggest no pair (a common result, not a copy)


def _evidence_items(evidence: dict) -> dict[str, str]:
    items = {f"out:{key}": value for key, value in (evidence.get("outputs") or {}).items()}
    for kind in ("sources", "sequence"):
        if evidence.get(kind):
            items[kind] = evidence[kind]
    return items


def similar_pairs(evidences: list[dict], samples: Iterable[dict] = ()) -> list[dict]:
    """Pairs of submissions whose runs are too alike to be two honest runs.

    Compared is what differs between honest runs of the same code: a cell's
    outputs (among the submissions that ran the same code, an item is evidence
    only where they do not all agree), the set of code that ran and the order
    of the run.  Each shared value weighs more the fewer submissions hold it (1
    when only the pair does, 2/k when k do); each differing value weighs against
    as much as the rarer of the two.  ``samples``: more runs' outputs (a rerun's)
    that only tell which cells vary.  Returns ``{"pair": (i, j), "similarity",
    "outputs" (cells that vary, matched), "varying" (cells that vary, both ran),
    "sources", "sequence" (whether those match and vary)}``."""
    items = [_evidence_items(e or {}) for e in evidences]
    holders: dict[str, dict[str, int]] = {}
    for found in [*items, *({f"out:{k}": v for k, v in (s or {}).items()} for s in samples)]:
        for key, value in found.items():
            counts = holders.setdefault(key, {})
            counts[value] = counts.get(value, 0) + 1
    varying = {key for key, counts in holders.items() if len(counts) > 1}
    owners: dict[tuple[str, str], list[int]] = {}
    for i, found in enumerate(items):
        for key, value in found.items():
            if key in varying and holders[key][value] <= RARE:
                owners.setdefault((key, value), []).append(i)
    candidates = {(a, b) for group in owners.values() for n, a in enumerate(group) for b in group[n + 1:]}
    pairs = []
    for a, b in sorted(candidates):
        matched = total = 0.0
        outputs = both = 0
        for key in varying & items[a].keys() & items[b].keys():
            va, vb = items[a][key], items[b][key]
            weight = min(1.0, 2.0 / min(holders[key][va], holders[key][vb]))
            total += weight
            if va == vb:
                matched += weight
            if key.startswith("out:"):
                both += 1
                outputs += va == vb
        if total and matched / total >= SIMILAR and matched >= MIN_EVIDENCE:
            pairs.append({"pair": (a, b), "similarity": round(matched / total, 3), "outputs": outputs,
                          "varying": both,
                          **{kind: kind in varying and items[a].get(kind) == items[b].get(kind)
                             for kind in ("sources", "sequence")}})
    return pairs


def _why_similar(pair: dict) -> str:
    """One sentence: why a pair is flagged (without naming anyone)."""
    also = [what for kind, what in (("sources", "the same set of code"), ("sequence", "the same order of the run"))
            if pair[kind]]
    return (f"the outputs of {pair['outputs']} of the {pair['varying']} cells whose output differs between runs "
            "(times, process ids, inode numbers, random values) are identical"
            + (f", with {' and '.join(also)}" if also else "")
            + f" (similarity {pair['similarity']:.2f}): one run handed in twice, its ids rewritten")


def flag_shared_runs(results: list[dict]) -> list[dict]:
    """Flag submissions of one class that share identical records (``replay``), a
    kernel session (``shared-session``) or the outputs of one run
    (``same-outputs``, see :func:`similar_pairs`) with others: a copy of an
    executed notebook carries the run of the student it was copied from.

    A flag's message names the others, for the instructor; ``others`` lists
    them apart, so a page for the student can leave them out.  The outputs of
    reruns (``evidence.rerun_outputs``) tell which cells vary, so that two
    copies are found even in a class of two.  Returns the pairs found, each
    with its similarity and why, for the report."""
    owners: dict[tuple[str, str], set[int]] = {}
    for i, result in enumerate(results):
        evidence = result.get("evidence") or {}
        for kind in ("records", "sessions"):
            for value in evidence.get(kind, ()):
                owners.setdefault((kind, value), set()).add(i)
    samples = [(r.get("evidence") or {}).get("rerun_outputs") or {} for r in results]
    similar = similar_pairs([r.get("evidence") or {} for r in results], samples)
    alike: dict[int, list[tuple[int, dict]]] = {}
    for pair in similar:
        a, b = pair["pair"]
        alike.setdefault(a, []).append((b, pair))
        alike.setdefault(b, []).append((a, pair))
    report: list[dict] = []
    for i, result in enumerate(results):
        evidence = result.get("evidence") or {}
        same = {kind: set().union(*(owners[(kind, v)] for v in evidence.get(kind, ()))) - {i}
                for kind in ("records", "sessions")}
        if same["records"]:
            _shared(result, "replay", same["records"], results,
                    f"has records identical to those of {_names(results, same['records'])}: "
                    "copies of one executed notebook",
                    f"has records identical to those of {_others(same['records'])}: copies of one executed notebook")
        if same["sessions"] - same["records"]:
            others = same["sessions"] - same["records"]
            _shared(result, "shared-session", others, results,
                    f"ran in the same kernel session as {_names(results, others)}: notebooks built from one run",
                    f"ran in the same kernel session as {_others(others)}: notebooks built from one run")
        outputs = [(j, pair) for j, pair in alike.get(i, []) if j not in same["records"] | same["sessions"]]
        if outputs:
            best = max(pair["similarity"] for _, pair in outputs)
            top = max(outputs, key=lambda item: item[1]["similarity"])[1]
            copied = {j for j, _ in outputs}
            _shared(result, "same-outputs", copied, results,
                    f"the same run as {_names(results, copied)}: {_why_similar(top)}",
                    f"the same run as {_others(copied)}: {_why_similar(top)}", similarity=best)
    for pair in similar:
        a, b = pair["pair"]
        why = _why_similar(pair)
        report.append({"students": [str(results[a]["student"]), str(results[b]["student"])],
                       "paths": [results[a].get("path"), results[b].get("path")],
                       "similarity": pair["similarity"], "why": why[0].upper() + why[1:] + "."})
    return report


def _shared(result: dict, kind: str, others: set[int], results: list[dict], message: str, for_student: str,
            **extra) -> None:
    """A flag naming other submissions: ``message`` for instructors, ``for_student`` for the student's own page."""
    result["flags"].append({"kind": kind, "cell": None, "message": message, "for_student": for_student,
                            "others": [str(results[j]["student"]) for j in sorted(others)], **extra})


def _others(indexes: set[int]) -> str:
    """Other submissions, unnamed: what a student's own page may say of them."""
    return "another submission" if len(indexes) == 1 else f"{len(indexes)} other submissions"


def _names(results: list[dict], indexes: set[int]) -> str:
    names = [str(results[j]["student"]) for j in sorted(indexes)]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ---- where a rerun runs ---------------------------------------------------------
_TARGET_LINE = re.compile(r"^[ \t]*%target[ \t]+(\S.*?)[ \t]*$", re.M)


def _target_lines(source: str) -> list[str]:
    return [f"%target {m.group(1)}" for m in _TARGET_LINE.finditer(source)]


def target_changes(ref: Reference, nb: dict, target: str) -> list[dict]:
    """Flags for the ways a submission asks to run elsewhere than ``target``
    (``%target SPEC`` in a cell, ``metadata.workshop.target``), beyond what the
    reference itself says.  A rerun refuses them all; the flags say who tried."""
    flags: list[dict] = []
    fixed = f"the target is fixed for this run ({target})"
    spec = (nb.get("metadata", {}).get("workshop") or {}).get("target")
    if spec and spec != target and spec not in ref.targets:
        _flag(flags, "target-change-refused", None, f"metadata.workshop.target asks for {str(spec)[:100]!r}; "
                                                   f"ignored: {fixed}")
    names = {c.id: c.name for c in ref.cells}
    ordinal = 0
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        ordinal += 1
        for line in _target_lines(multiline_text(cell.get("source"))):
            if line not in ref.targets:
                _flag(flags, "target-change-refused", names.get(cell.get("id")) or cell_name(ordinal, cell.get("id")),
                      f"`{line[:100]}` in the cell was refused: {fixed}")
    return flags


# ---- restoring the reference's checks in a submission ------------------------
def restore_reference(ref: Reference, nb: dict) -> list[int]:
    """Put the reference's checks (visible and hidden), its locked cells and its
    hidden cells back into a submission; the student's own code stays.  Returns
    the indexes of the cells that are now wholly the reference's (locked and
    hidden cells, and cells whose code is the reference's as written): a rerun
    vouches for those and runs the others isolated."""
    _put_back_hidden_cells(ref, nb)
    by_id = {cell.get("id"): cell for cell in nb["cells"]}
    vouched = set()
    for ref_cell in ref.cells:
        cell = by_id.get(ref_cell.id)
        if cell is None:
            continue
        if ref_cell.hidden:
            vouched.add(id(cell))
            continue
        if ref_cell.locked:
            cell["source"] = ref_cell.source
            vouched.add(id(cell))
            continue
        ref_lines = ref_cell.source.split("\n")
        ref_expects = [line for line in ref_lines if line.strip().startswith("%expect")]
        ref_checks = next((ref_lines[i:] for i, line in enumerate(ref_lines) if is_check_line(line)), [])
        lines = multiline_text(cell.get("source")).split("\n")
        for i, line in enumerate(lines):
            if is_check_line(line):
                lines = lines[:i]
                break
        lines = [line for line in lines if not line.strip().startswith("%expect")]
        cell["source"] = "\n".join(ref_expects + lines + ref_checks)
        if cell["source"] == ref_cell.source:  # the instructor's code, as written
            vouched.add(id(cell))
    return [i for i, cell in enumerate(nb["cells"]) if id(cell) in vouched]


def _put_back_hidden_cells(ref: Reference, nb: dict) -> None:
    """Insert the reference's hidden cells where the reference has them (after the
    nearest earlier cell the submission has); a cell of the submission that
    claims a hidden cell's id is replaced."""
    hidden = {c.id: c for c in ref.cells if c.hidden}
    if not hidden:
        return
    nb["cells"] = [cell for cell in nb["cells"] if cell.get("id") not in hidden]
    for k, cell_id in enumerate(ref.order):
        if cell_id not in hidden:
            continue
        ids = [cell.get("id") for cell in nb["cells"]]
        before = next((ids.index(i) for i in reversed(ref.order[:k]) if i in ids), -1)
        nb["cells"].insert(before + 1, {
            "cell_type": "code", "id": cell_id, "execution_count": None, "outputs": [],
            "metadata": {"workshop": {"hidden": True, "locked": True}}, "source": hidden[cell_id].source})


# ---- naming submissions, and the graded class ----------------------------------
def student_names(paths: Sequence[Path]) -> list[str]:
    """File stems, or folder names when every file has the same name (as text every
    report can hold: bytes of a name that are not UTF-8 become U+FFFD)."""
    stems = [display_path(p.stem) for p in paths]
    if len(paths) > 1 and len(set(stems)) == 1:
        parents = [display_path(p.resolve().parent.name) for p in paths]
        if len(set(parents)) == len(parents):
            return parents
    seen: dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem} ({seen[stem]})")
    return names


def expand_paths(items: Iterable[Path | str]) -> list[Path]:
    """The notebooks given: files as they are, folders searched for .ipynb.

    Checkpoints are skipped and symbolic links to folders are not followed.  A
    folder named like a notebook is one submission (graded unreadable), never
    searched: what is inside it is not a notebook of its own."""
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        if item.suffix != ".ipynb" and item.is_dir():
            paths.extend(_notebooks_under(item))
        else:
            paths.append(item)
    return paths


def _notebooks_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        found += [Path(root, name) for name in dirs + files if name.endswith(".ipynb")]
        dirs[:] = [name for name in dirs if name != ".ipynb_checkpoints" and not name.endswith(".ipynb")]
    return sorted(found)


@dataclass
class Report:
    """The results of many submissions against one reference (what reports render)."""

    reference: Reference
    results: list[dict]
    rerun_target: str | None = None  # where the submissions ran again, for reruns
    pairs: list[dict] = field(default_factory=list)  # submissions too alike to be two runs: similarity, why

    def as_json(self) -> dict:
        return {
            "reference": str(self.reference.path),
            "rerun_target": self.rerun_target,
            "max_points": self.reference.max_points,
            "checks": [
                {"key": c.key, "cell_id": c.cell_id, "cell": c.label, "kind": c.kind, "name": c.name,
                 "points": c.points, "hidden": c.hidden}
                for c in self.reference.checks
            ],
            "tasks": [{"cell_id": t.cell_id, "label": t.label, "kind": t.kind, "checks": t.checks,
                       "manual_points": t.manual_points} for t in self.reference.tasks],
            "submissions": self.results,
            "similar_pairs": self.pairs,
        }


# cell_record, cell_streams and stream_matches now live in workshop.records; the
# names stay importable from here for older callers (tests/test_checks.py).
__all__ = [
    "NEEDS_RERUN", "GradingError", "NoChecksError", "RefCell", "RefCheck", "RefTask", "Reference", "Report",
    "cell_record", "cell_streams", "check_notebook", "student_code", "task_answers",
    "display_path", "expand_paths", "flag_shared_runs", "grade_submission", "load_reference", "read_notebook_json",
    "reference_of", "restore_reference", "run_evidence", "similar_pairs", "stream_matches", "student_names", "target_changes",
]
