"""What a cell is in an assignment, as its ``metadata.workshop`` says.

- ``task``: the student's work goes here (``true`` in a source notebook; in a
  release ``{"points": N}``, the points of the cell's checks, which the kernel
  shows in the cell's badge);
- ``manual_points``: points a person gives by hand (a Markdown answer, say);
- ``locked``: the student must not change the cell (nbgrader's ``editable:
  false`` counts too);
- ``hidden``: a cell of checks the students never see: the reference keeps it,
  the student copy leaves it out.

Solution regions (``### BEGIN SOLUTION`` / ``### END SOLUTION`` in code, or
``// BEGIN SOLUTION`` / ``// END SOLUTION`` in a file of a language whose
comments start with ``//``, Go or C written with ``%%file``; ``<!-- BEGIN
SOLUTION -->`` / ``<!-- END SOLUTION -->`` in Markdown) are the student's to
write; the placeholder left in their place is a comment of the marker's kind.  Answer regions (``<!-- BEGIN ANSWER [TASK] -->`` /
``<!-- END ANSWER -->``, Markdown only) hold text that gives a task's answer
away, an explanation after a prediction say: the student copy leaves them out,
the reference keeps them, and feedback pages show them under the task named
(the cell's own task, or else the nearest task above, when none is named).

Pure helpers over plain notebook JSON, for the author's tool, the grader and
the kernel's badge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import AssignmentError


@dataclass(frozen=True)
class Markers:
    begin: re.Pattern[str]
    end: re.Pattern[str]
    begin_text: str
    end_text: str
    placeholder: str


# a shell or Python comment (#), or a Go or C one (//): the placeholder takes the marker's
CODE = Markers(re.compile(r"^(?P<indent>[ \t]*)(?P<leader>#+|//+)[ \t]*BEGIN SOLUTION[ \t]*$"),
               re.compile(r"^[ \t]*(?:#+|//+)[ \t]*END SOLUTION[ \t]*$"),
               "### BEGIN SOLUTION", "### END SOLUTION", "# YOUR CODE HERE")
MARKDOWN = Markers(re.compile(r"^(?P<indent>[ \t]*)<!--[ \t]*BEGIN SOLUTION[ \t]*-->[ \t]*$"),
                   re.compile(r"^[ \t]*<!--[ \t]*END SOLUTION[ \t]*-->[ \t]*$"),
                   "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->", "YOUR ANSWER HERE")

ANSWER = Markers(re.compile(r"^(?P<indent>[ \t]*)<!--[ \t]*BEGIN ANSWER(?:[ \t]+(?P<task>[^\s>]+))?[ \t]*-->[ \t]*$"),
                 re.compile(r"^[ \t]*<!--[ \t]*END ANSWER[ \t]*-->[ \t]*$"),
                 "<!-- BEGIN ANSWER -->", "<!-- END ANSWER -->", "")


# ---- solution regions ------------------------------------------------------------
def solution_regions(lines: Sequence[str], markers: Markers) -> tuple[list[tuple[int, int]], list[str]]:
    """The (begin, end) line indexes of each region, and what is wrong with the markers."""
    regions: list[tuple[int, int]] = []
    problems: list[str] = []
    start: int | None = None
    for i, line in enumerate(lines):
        if markers.begin.match(line):
            if start is None:
                start = i
            else:
                problems.append(f"line {i + 1}: {markers.begin_text} comes before the region opened on line "
                                f"{start + 1} is closed with {markers.end_text}")
        elif markers.end.match(line):
            if start is None:
                problems.append(f"line {i + 1}: {markers.end_text} has no {markers.begin_text} above it")
            else:
                regions.append((start, i))
                start = None
    if start is not None:
        problems.append(f"line {start + 1}: {markers.begin_text} has no {markers.end_text} below it")
    return regions, problems


def replace_solutions(text: str, markers: Markers) -> str:
    """``text`` with each solution region replaced by the placeholder, indented as its marker."""
    lines = text.split("\n")
    regions, problems = solution_regions(lines, markers)
    if problems:
        raise AssignmentError("; ".join(problems))
    for start, end in reversed(regions):
        found = markers.begin.match(lines[start])
        placeholder = markers.placeholder
        if (found.groupdict().get("leader") or "").startswith("/"):  # the same text as a // comment
            placeholder = "// " + placeholder.lstrip("#").lstrip()
        lines[start : end + 1] = [found.group("indent") + placeholder]
    return "\n".join(lines)


def answer_blocks(text: str) -> list[tuple[str | None, str]]:
    """The answer regions of a Markdown text: (the task they answer, or None, and their text).
    Markers that do not pair up are the author's tool's to report (``solution_regions``)."""
    lines = text.split("\n")
    regions, _ = solution_regions(lines, ANSWER)
    return [(ANSWER.begin.match(lines[start]).group("task"), "\n".join(lines[start + 1 : end]).strip("\n"))
            for start, end in regions]


def hide_answers(text: str) -> str:
    """A Markdown text without its answer regions (a blank line where one was)."""
    lines = text.split("\n")
    regions, problems = solution_regions(lines, ANSWER)
    if problems:
        raise AssignmentError("; ".join(problems))
    for start, end in reversed(regions):
        lines[start : end + 1] = [""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + ("\n" if text.endswith("\n") else "")


def workshop_meta(cell: dict) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    found = meta.get("workshop") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and value == value:
        return float(value)
    return None


def manual_points(cell: dict) -> float:
    """Points a person gives this cell by hand (0 when none)."""
    return _number(workshop_meta(cell).get("manual_points")) or 0.0


def is_task(cell: dict) -> bool:
    meta = workshop_meta(cell)
    return bool(meta.get("task")) or manual_points(cell) > 0


def is_hidden(cell: dict) -> bool:
    return bool(workshop_meta(cell).get("hidden"))


def is_locked(cell: dict) -> bool:
    meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
    return bool(workshop_meta(cell).get("locked")) or meta.get("editable") is False or is_hidden(cell)


def task_points(cell: dict) -> float | None:
    """The points a released task cell announces (its checks'), or None."""
    task = workshop_meta(cell).get("task")
    return _number(task.get("points")) if isinstance(task, dict) else None


# ---- the kernel's side: which task a running cell is ----------------------------
# The execute request's metadata key by which the runner of a grading rerun
# vouches for a cell (the instructor's locked cells); only the runner writes
# request metadata, a notebook's cells cannot put it there.
VOUCHED = "workshopVouched"


def record_task(cell_meta: dict | None, saved_cell: Callable[[str], dict | None] | None = None) -> dict:
    """What goes into a cell's record about its task: ``{"task": {"points": N,
    "manual_points": M}}``, or nothing for a cell that is no task.

    ``cell_meta`` is the metadata of the execute request.  ``workshop run`` (and
    any client that does the same) sends the cell's own ``workshop`` metadata in
    it; JupyterLab sends the cell's id (``cellId``), and the cell is then the one
    ``saved_cell(id)`` finds: the front end's look-up in the saved notebook."""
    if not isinstance(cell_meta, dict):
        return {}
    cell = {"metadata": {"workshop": cell_meta["workshop"]}} if isinstance(cell_meta.get("workshop"), dict) else None
    if cell is None and saved_cell is not None and isinstance(cell_meta.get("cellId"), str):
        cell = saved_cell(cell_meta["cellId"])
    if not cell or not is_task(cell):
        return {}
    task = {"points": task_points(cell) or 0.0}
    if manual_points(cell):
        task["manual_points"] = manual_points(cell)
    return {"task": task}
