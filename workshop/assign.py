"""Authoring: one source notebook -> the students' release and the grader's reference.

A source notebook holds everything an assignment is:

- solution regions: in code cells between ``### BEGIN SOLUTION`` and ``### END
  SOLUTION`` lines (any number of ``#``), in Markdown cells between ``<!-- BEGIN
  SOLUTION -->`` and ``<!-- END SOLUTION -->``; a cell with one is a task, and
  in the student copy each region becomes ``# YOUR CODE HERE`` (indented as its
  marker) or ``YOUR ANSWER HERE``;
- checks as the kernel knows them (``%expect``, ``%%check``); ``%%check
  --hidden`` sections and cells with ``metadata.workshop.hidden`` are hidden
  checks: kept in the reference, left out of the student copy;
- ``metadata.workshop``: ``task`` (a task without a solution region),
  ``manual_points`` (points a person gives by hand), ``locked`` (every code
  cell that is no task is locked unless it says ``"locked": false``), ``name``
  (the task's name in reports).

:func:`release` checks each source (every problem is one sentence naming its
cell; nothing is written while there is one), runs the reference headless and
refuses when a check of its own solution fails, then writes
``OUT/student/NAME.ipynb`` and ``OUT/reference/NAME.ipynb``.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import quick_nbformat  # noqa: F401 (first: it makes importing nbformat quick)

# isort: split
import nbformat

from .checks import cell_checks, check_options, is_check_line, without_hidden_checks
from .errors import AssignmentError, CheckSyntaxError, GradingError
from .grading.notebook import read_notebook_json
from .grading.reference import Reference, reference_of
from .records import multiline_text
from .tasks import (
    ANSWER,
    CODE,
    MARKDOWN,
    hide_answers,
    is_hidden,
    is_task,
    replace_solutions,
    solution_regions,
    workshop_meta,
)

DEFAULT_TIMEOUT = 120.0  # seconds a cell of the reference may take while it is verified
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # what nbformat 4.5 allows


@dataclass
class Release:
    """One source made into its two copies (in memory until written)."""

    name: str
    source: Path
    student: dict
    reference: dict
    ref: Reference  # what the grader will read from the reference
    notes: list[str] = field(default_factory=list)


# ---- checking a source -------------------------------------------------------------
def _regions_of(cell: dict) -> tuple[list[tuple[int, int]], list[str]]:
    kind = cell.get("cell_type")
    if kind not in ("code", "markdown"):
        return [], []
    lines = multiline_text(cell.get("source")).split("\n")
    markers, other = (CODE, MARKDOWN) if kind == "code" else (MARKDOWN, CODE)
    regions, problems = solution_regions(lines, markers)
    wrong = next((i for i, line in enumerate(lines) if other.begin.match(line) or other.end.match(line)), None)
    if wrong is not None:
        where = "a code cell" if kind == "code" else "a Markdown cell"
        problems.append(f"line {wrong + 1}: {lines[wrong].strip()} does not mark a solution in {where}; write "
                        f"{markers.begin_text} and {markers.end_text}")
    answers, wrong_answers = solution_regions(lines, ANSWER)
    if kind == "code" and answers:
        problems.append(f"line {answers[0][0] + 1}: an answer region in a code cell would stay in the student copy; "
                        "answer regions are Markdown")
    elif kind == "markdown":
        problems += wrong_answers
    if kind == "code":
        for start, end in regions:
            inside = [i for i in range(start, end + 1) if is_check_line(lines[i]) or lines[i].strip().startswith(
                "%expect")]
            if inside:
                problems.append(f"line {inside[0] + 1}: a check inside the solution region of lines {start + 1}-"
                                f"{end + 1} would leave the student copy with the solution; write checks outside "
                                "the region")
    return regions, problems


def _metadata_problems(cell: dict) -> list[str]:
    meta = (cell.get("metadata") or {}).get("workshop", {})
    if not isinstance(meta, dict):
        return ["metadata.workshop is not an object"]
    problems = []
    for key in ("locked", "hidden"):
        if key in meta and not isinstance(meta[key], bool):
            problems.append(f"metadata.workshop.{key} is {meta[key]!r}, not true or false")
    if "task" in meta and not isinstance(meta["task"], (bool, dict)):
        problems.append(f"metadata.workshop.task is {meta['task']!r}, not true or false")
    points = meta.get("manual_points")
    if "manual_points" in meta and (not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0):
        problems.append(f"metadata.workshop.manual_points is {points!r}, not a number of points")
    name = meta.get("name")
    if "name" in meta and (not isinstance(name, str) or not name or any(c.isspace() for c in name)):
        problems.append(f"metadata.workshop.name is {name!r}, not a name without spaces")
    return problems


def _check_problems(source: str, graded: bool, tasks_before: int) -> list[str]:
    """Checks that do not parse; in a task or hidden cell, checks without a name;
    above every task, hidden checks (they would grade no student's work; below
    one, a hidden check in a locked cell keeps what it expects, an answer the
    student is to predict, out of the student copy)."""
    try:
        cell_checks(source)
    except CheckSyntaxError as exc:
        return [str(exc)]
    problems = []
    for i, line in enumerate(source.split("\n")):
        if not is_check_line(line):
            continue
        options = check_options(line)
        if graded and not options.name:
            problems.append(f"line {i + 1}: {line.strip()} has no --name; every check in a task needs one "
                            "(the grade book's columns are named after them)")
        if options.hidden and not graded and not tasks_before:
            problems.append(f"line {i + 1}: a hidden check in a cell with no task, above every task; hidden checks "
                            "grade a student's work: put it in the task's cell, or in a hidden cell "
                            "(metadata.workshop.hidden) below the task")
    return problems


def _role_problems(cell: dict, task: bool, tasks_before: int) -> list[str]:
    meta = workshop_meta(cell)
    locked = meta.get("locked") is True or (cell.get("metadata") or {}).get("editable") is False
    if is_hidden(cell):
        if task:
            return ["a hidden cell cannot be a task: students never see it"]
        if cell.get("cell_type") == "code" and not tasks_before:
            return ["a hidden cell of checks comes before any task; hidden checks grade a student's work: "
                    "move it below the task it checks"]
        if cell.get("cell_type") == "code" and not cell_checks(multiline_text(cell.get("source"))):
            return ["a hidden code cell without checks: students never run it, so their own runs would "
                    "lack what it does; make it a locked cell instead"]
    elif task and locked:
        return ["a task cannot be locked: students write in it"]
    return []


def _cell_problems(cell: dict, tasks_before: int) -> tuple[list[str], bool]:
    """What is wrong with one cell, and whether it is a task."""
    problems = _metadata_problems(cell)
    if problems:
        return problems, False
    regions, found = _regions_of(cell)
    if found:  # the markers first: what the cell is depends on them
        return found, True
    task = bool(regions) or is_task(cell)
    if cell.get("cell_type") == "code":
        problems += _check_problems(multiline_text(cell.get("source")), task or is_hidden(cell), tasks_before)
    if not problems:
        problems += _role_problems(cell, task, tasks_before)
    return problems, task


def _id_problems(nb: dict) -> tuple[list[str], list[str]]:
    """Problems with the cells' ids, and a note when cells had none (they get one from their position)."""
    problems: list[str] = []
    first: dict[str, int] = {}
    missing = [n for n, cell in enumerate(nb["cells"], 1) if not cell.get("id")]
    for n, cell in enumerate(nb["cells"], 1):
        cell_id = cell.get("id")
        if not cell_id:
            continue
        if not _CELL_ID.match(cell_id):
            problems.append(f"cell {n}: the id {cell_id[:80]!r} is not a cell id (letters, digits, - and _, "
                            "at most 64)")
        elif cell_id in first:
            problems.append(f"cell {n}: has the id {cell_id!r} of cell {first[cell_id]}; give each cell its own id")
        else:
            first[cell_id] = n
    for n in missing:
        new, k = f"cell-{n}", 2
        while new in first:
            new, k = f"cell-{n}-{k}", k + 1
        nb["cells"][n - 1]["id"] = new
        first[new] = n
    notes = [f"cells {', '.join(map(str, missing))} had no id and got one from their position; save the source "
             "in Jupyter (nbformat 4.5) so that ids stay with their cells when cells move"] if missing else []
    return problems, notes


def check_source(nb: dict) -> tuple[list[str], list[str], set[int]]:
    """Every problem of a source notebook (one sentence each, naming its cell), notes,
    and the indexes of its task cells.  Cells without ids are given ids."""
    problems, notes = _id_problems(nb)
    tasks: set[int] = set()
    for index, cell in enumerate(nb["cells"]):
        found, task = _cell_problems(cell, len(tasks))
        problems += [f"cell {index + 1}: {problem}" for problem in found]
        if task:
            tasks.add(index)
            if cell.get("cell_type") == "markdown" and not workshop_meta(cell).get("manual_points"):
                notes.append(f"cell {index + 1}: a Markdown answer without manual_points: nobody grades it")
    if not tasks and not problems:
        problems.append("no cell is a task: mark the students' work with ### BEGIN SOLUTION and ### END SOLUTION "
                        "(or <!-- BEGIN SOLUTION --> in Markdown, or metadata.workshop.task)")
    return problems, notes, tasks


# ---- the two copies ------------------------------------------------------------------
def _clean(cell: dict) -> None:
    """No outputs, no run: a copy as nobody has run it."""
    if cell.get("cell_type") == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    cell.setdefault("metadata", {}).pop("execution", None)


def _mark(cell: dict, task: bool) -> None:
    """The metadata that says what the cell is (the student's frontend honours editable/deletable)."""
    meta = cell["metadata"]
    workshop = meta.setdefault("workshop", {})
    if is_hidden(cell):
        workshop.update(hidden=True, locked=True)
    elif task:
        workshop["task"] = True
        workshop.pop("locked", None)
        meta["deletable"] = False
    elif cell.get("cell_type") == "code" and workshop.get("locked") is not False:
        workshop["locked"] = True
        meta.update(editable=False, deletable=False)
    elif cell.get("cell_type") == "markdown":
        meta.update(editable=False, deletable=False)
    if not workshop:
        del meta["workshop"]


def _reference_copy(nb: dict, tasks: set[int], source: Path) -> tuple[dict, Reference]:
    ref_nb = copy.deepcopy(nb)
    minor = ref_nb.get("nbformat_minor")
    ref_nb["nbformat"], ref_nb["nbformat_minor"] = 4, max(minor if isinstance(minor, int) else 0, 5)
    for index, cell in enumerate(ref_nb["cells"]):
        _clean(cell)
        _mark(cell, index in tasks)
    try:
        ref = reference_of(ref_nb, source)
    except GradingError as exc:
        raise AssignmentError(_listing(source, "cannot be released", [str(exc)])) from None
    points = {check.key: check.points for check in ref.checks}
    by_id = {cell["id"]: cell for cell in ref_nb["cells"]}
    for task in ref.tasks:
        by_id[task.cell_id]["metadata"]["workshop"]["task"] = {"points": float(sum(points[k] for k in task.checks))}
    ref_nb.setdefault("metadata", {}).setdefault("workshop", {})["assignment"] = {
        "name": source.stem, "points": ref.max_points, "hidden_points": ref.hidden_points,
        "manual_points": ref.manual_points}
    return ref_nb, ref


def _student_copy(ref_nb: dict) -> dict:
    student = copy.deepcopy(ref_nb)
    student["cells"] = [cell for cell in student["cells"] if not is_hidden(cell)]
    for cell in student["cells"]:
        text = multiline_text(cell.get("source"))
        if cell.get("cell_type") == "code":
            cell["source"] = without_hidden_checks(replace_solutions(text, CODE))
        elif cell.get("cell_type") == "markdown":
            cell["source"] = hide_answers(replace_solutions(text, MARKDOWN) if is_task(cell) else text)
    return student


def prepare(source: Path | str) -> Release:
    """Check a source notebook and make its two copies; AssignmentError lists every problem."""
    source = Path(source)
    try:
        nb = read_notebook_json(source)
    except GradingError as exc:
        raise AssignmentError(str(exc)) from None
    problems, notes, tasks = check_source(nb)
    if problems:
        raise AssignmentError(_listing(source, "cannot be released", problems))
    ref_nb, ref = _reference_copy(nb, tasks, source)
    if ref.answer_problems:
        raise AssignmentError(_listing(source, "cannot be released", ref.answer_problems))
    for task in ref.tasks:
        if not task.checks and not task.manual_points:
            index = next(i for i, c in enumerate(ref_nb["cells"]) if c.get("id") == task.cell_id)
            notes.append(f"cell {index + 1}: a task with no checks and no manual_points: it earns nothing")
    return Release(source.stem, source, _student_copy(ref_nb), ref_nb, ref, notes)


def _listing(source: Path, headline: str, items: Sequence[str]) -> str:
    return f"{source}: {headline}; nothing was written:\n" + "\n".join(f"  {item}" for item in items)


# ---- verifying and writing --------------------------------------------------------------
def verify(rel: Release, target: str | None, timeout: float | None, workdir: Path) -> list[str]:
    """Run the reference headless; what failed (the reference's own solution must pass every check)."""
    from .errors import NotebookError
    from .runner import run_notebook  # nbclient: only a verification needs it

    with tempfile.TemporaryDirectory(prefix="workshop-assign-") as tmp:
        path = Path(tmp) / f"{rel.name}.ipynb"
        path.write_text(nbformat.writes(nbformat.from_dict(rel.reference)), encoding="utf-8")
        try:
            result = run_notebook(path, out_dir=Path(tmp) / "out", target=target, timeout=timeout,
                                  allow_errors=True, workdir=workdir)
        except NotebookError as exc:
            return [f"the reference could not be run: {exc}"]
        except Exception as exc:  # no kernelspec, a kernel that does not start...
            return [f"the reference could not be run: {type(exc).__name__}: {exc}"]
    problems = [f"the reference did not run to the end: {result.error}"] if result.error else []
    problems += [f"cell {check.cell_index + 1}: the check {check.key} fails on the reference's own solution"
                 f"{': ' + check.message if check.message else ''}" for check in result.failed_checks]
    checked = {check.cell_index for check in result.checks if not check.passed}
    problems += [f"cell {cell.index + 1}: the cell fails on the reference's own solution "
                 f"(exit status {(cell.record or {}).get('exit_status')})"
                 for cell in result.cells if cell.status == "error" and cell.index not in checked]
    return problems


def release(sources: Sequence[Path | str], out_dir: Path | str, *, verify_reference: bool = True,
            target: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
            on_step: Callable[[str], None] | None = None) -> list[Release]:
    """Check every source, verify each reference, then write both copies of each
    (all or nothing: a problem anywhere writes nothing)."""
    out_dir = Path(out_dir)
    releases: list[Release] = []
    problems: list[str] = []
    for source in sources:
        try:
            releases.append(prepare(source))
        except AssignmentError as exc:
            problems.append(str(exc))
    problems += _clashes(releases, out_dir)
    if problems:
        raise AssignmentError("\n".join(problems))
    for rel in releases if verify_reference else ():
        if on_step:
            on_step(f"running the reference of {rel.name} to verify its solution")
        failed = verify(rel, target, timeout, rel.source.resolve().parent)
        if failed:
            problems.append(_listing(rel.source, "the reference's own solution does not pass", failed))
    if problems:
        raise AssignmentError("\n".join(problems))
    for rel in releases:
        _write(out_dir / "student" / f"{rel.name}.ipynb", rel.student)
        _write(out_dir / "reference" / f"{rel.name}.ipynb", rel.reference)
    return releases


def _clashes(releases: Sequence[Release], out_dir: Path) -> list[str]:
    problems = []
    seen: dict[str, Path] = {}
    for rel in releases:
        if rel.name in seen:
            problems.append(f"{rel.source}: has the name of {seen[rel.name]}; both would be released as "
                            f"{rel.name}.ipynb")
        seen[rel.name] = rel.source
        for kind in ("student", "reference"):
            if (out_dir / kind / f"{rel.name}.ipynb").resolve() == rel.source.resolve():
                problems.append(f"{rel.source}: --out {out_dir} would write the {kind} copy over the source")
    return problems


def _write(path: Path, nb: dict) -> None:
    """Write a notebook whole or not at all (a temporary file, then a rename)."""
    node = nbformat.from_dict(nb)
    nbformat.validate(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(nbformat.writes(node))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


__all__ = ["CODE", "MARKDOWN", "Release", "check_source", "prepare", "release", "replace_solutions",
           "solution_regions", "verify", "without_hidden_checks"]
