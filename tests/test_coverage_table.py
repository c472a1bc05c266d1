"""notebooks/COVERAGE.md read against the notebooks and against real probe runs.

Every row marked strong (S) says in its Caught column what its checks catch, one clause per cell:

    `CELL-ID` `CHECK`, `%expect KIND ARG`: refuse empty, printf, line 5, every line
    `CELL-ID` `CHECK`: fails when ...

A ``refuse`` clause names shortcuts of ``workshop probe``: the named checks (at least one of them)
fail each one.  For a task's cell the notebook's own probe run shows it; for a cell that is no task,
a probe of the notebook cut after that cell, with the cell made a task.  A ``fails when`` clause
states the concrete failure in words; its cell and checks must exist.  Weak rows (W) say why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from workshop.assign import prepare
from workshop.probe import SHORTCUTS

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "notebooks" / "COVERAGE.md"
STRENGTHS = ("S", "W", "explained", "N/A", "heading")
CLAUSE = re.compile(r"^`(?P<cell>nb\d\d-[a-z0-9-]+)` (?P<checks>`[^`]+`(?:, `[^`]+`)*): (?P<what>\S.*)$")
SHORTCUT = re.compile(r"^(empty|printf|host|every line|line (\d+))$")
CELL_ID = re.compile(r"\bnb\d\d-[a-z0-9]+(?:-[a-z0-9]+)*\b")


@dataclass
class Row:
    number: str
    section: str
    columns: dict[str, str]

    @property
    def strength(self) -> str:
        return self.columns["Str."]

    @property
    def caught(self) -> str:
        return self.columns["Caught"]


@dataclass
class Clause:
    row: str
    cell: str
    checks: list[str]
    what: str
    shortcuts: list[str] = field(default_factory=list)  # for a "refuse" clause


def split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [cell.strip().replace("\\|", "|") for cell in cells]


@cache
def table() -> tuple[list[Row], str]:
    rows: list[Row] = []
    text = TABLE.read_text()
    section, header = "", None
    for line in text.splitlines():
        if line.startswith("## "):
            section, header = line[3:].strip(), None
        elif line.startswith("| #"):
            header = split_row(line)
        elif header and re.match(r"^\| [A-E]\d+ \|", line):
            cells = split_row(line)
            assert len(cells) == len(header), line
            rows.append(Row(cells[0], section, dict(zip(header, cells, strict=True))))
    return rows, text


def clauses(row: Row) -> list[Clause]:
    found = []
    for part in row.caught.split("<br>"):
        match = CLAUSE.match(part.strip())
        assert match, f"{row.number}: a Caught clause is not `CELL` `CHECK`: WHAT: {part!r}"
        checks = re.findall(r"`([^`]+)`", match["checks"])
        clause = Clause(row.number, match["cell"], checks, match["what"])
        if clause.what.startswith("refuse "):
            clause.shortcuts = [s.strip() for s in clause.what[len("refuse "):].split(",")]
        else:
            assert clause.what.startswith("fails when "), f"{row.number}: say 'refuse ...' or 'fails when ...'"
        found.append(clause)
    return found


@dataclass
class Notebook:
    cells: dict[str, dict[str, str]]  # cell id -> check name -> kind ("check" or "expect")
    tasks: dict[str, list[str]]  # a task's cell id -> the names of its checks (hidden cells' too)


@cache
def notebook(number: str) -> Notebook:
    source = next((ROOT / "notebooks").glob(f"{number}-*.ipynb"))
    ref = prepare(source).ref
    cells = {cell.id: {check.name: check.kind for check in cell.checks} for cell in ref.cells}
    for cell in json.loads(source.read_text())["cells"]:
        cells.setdefault(cell.get("id"), {})
    names = {check.key: check.name for check in ref.checks}
    return Notebook(cells, {task.cell_id: [names[key] for key in task.checks] for task in ref.tasks})


def check_name(ref: str) -> str:
    """A clause's check as the grader names it: a %%check's name, or an expectation without ``%expect``."""
    return ref[len("%expect "):] if ref.startswith("%expect ") else ref


def all_clauses() -> list[Clause]:
    rows, _ = table()
    return [clause for row in rows if row.strength == "S" for clause in clauses(row)]


def refusals(number: str, tasks: bool) -> list[Clause]:
    """The ``refuse`` clauses on cells of notebook NUMBER that are tasks (or that are not)."""
    return [c for c in all_clauses() if c.shortcuts and c.cell[2:4] == number
            and (c.cell in notebook(number).tasks) == tasks]


# ---- the table itself -----------------------------------------------------------------
def test_every_row_has_a_known_strength_and_a_caught_column():
    rows, _ = table()
    assert len(rows) == 121 and len({row.number for row in rows}) == 121
    for row in rows:
        assert row.strength in STRENGTHS, row.number
        if row.strength in ("N/A", "explained", "heading"):
            assert row.caught == "—", f"{row.number}: only strong and weak rows say what is caught"
        elif row.strength == "W":
            assert row.caught.startswith("nothing: "), f"{row.number}: a weak row says why: 'nothing: WHY'"
        else:
            assert clauses(row), row.number


def test_a_heading_is_no_step():
    rows, _ = table()
    assert [row.number for row in rows if row.strength == "heading"] == ["E17"]


def test_every_strong_row_names_cells_and_checks_the_notebooks_have():
    rows, _ = table()
    for row in rows:
        if row.strength != "S":
            continue
        for cell in CELL_ID.findall(row.columns["Notebook cell"]):
            assert cell in notebook(cell[2:4]).cells, f"{row.number}: no cell {cell}"
        for clause in clauses(row):
            nb = notebook(clause.cell[2:4])
            assert clause.cell in nb.cells, f"{row.number}: no cell {clause.cell}"
            assert clause.cell in CELL_ID.findall(row.columns["Notebook cell"]), (
                f"{row.number}: {clause.cell} is caught but not named in the Notebook cell column")
            own = list(nb.cells[clause.cell]) + nb.tasks.get(clause.cell, [])
            for ref in clause.checks:
                assert check_name(ref) in own, f"{row.number}: {clause.cell} has no check {ref} (it has {own})"


def test_every_claimed_shortcut_is_one_the_probe_tries():
    for clause in all_clauses():
        for shortcut in clause.shortcuts:
            match = SHORTCUT.match(shortcut)
            assert match, f"{clause.row}: {shortcut!r} is no shortcut (empty, printf, host, every line, line N)"
            assert ("lines" if "line" in shortcut else shortcut) in SHORTCUTS


def test_every_task_of_the_notebooks_is_claimed_by_a_row():
    claimed = {clause.cell for clause in all_clauses() if clause.shortcuts}
    for number in ("01", "02", "03", "04", "05", "06", "07", "08", "09"):
        for cell, checks in notebook(number).tasks.items():
            assert not checks or cell in claimed, f"the task in {cell} is named in no refuse clause"


def test_the_summary_counts_are_those_of_the_rows():
    rows, text = table()
    count = {s: sum(1 for row in rows if row.strength == s) for s in STRENGTHS}
    summary = re.search(r"\*\*Summary\*\*: (\d+) steps: (\d+) strong \(S\), (\d+) weak \(W\), (\d+) explained, "
                        r"(\d+) N/A; (\d+) headings? \(not a step\)", text)
    assert summary, "the header's summary line is missing"
    assert [int(n) for n in summary.groups()] == [len(rows) - count["heading"], count["S"], count["W"],
                                                  count["explained"], count["N/A"], count["heading"]]
    # and the totals under each part of the table, over the rows since the last totals line
    seen: list[Row] = []
    totals = 0
    for line in text.splitlines():
        if re.match(r"^\| [A-E]\d+ \|", line):
            seen.append(next(row for row in rows if row.number == split_row(line)[0]))
        elif line.startswith("Totals") or line.startswith("All seeds"):
            part = rows if line.startswith("All seeds") else seen
            steps = [row for row in part if row.strength != "heading"]
            found = re.search(r": (\d+) steps, (\d+) strong \(S\)(?:, (\d+) weak \(W\))?.*?, (\d+) N/A", line)
            assert found, line
            said = [int(n or 0) for n in found.groups()]
            assert said == [len(steps), sum(r.strength == "S" for r in steps), sum(r.strength == "W" for r in steps),
                            sum(r.strength == "N/A" for r in steps)], line
            seen, totals = [], totals + 1
    assert totals == 4


# ---- the claims, against probe runs -----------------------------------------------------
def assert_refused(clause: Clause, task: dict) -> None:
    """Each shortcut the clause names was run on the task and failed at least one of the clause's checks."""
    keys = {key for key in task["checks"] if key.split(":", 1)[1] in map(check_name, clause.checks)}
    assert keys, f"{clause.row}: the probe's task {task['task']} has none of {clause.checks}"
    runs = task["shortcuts"]
    for shortcut in clause.shortcuts:
        if shortcut == "every line":
            chosen = [run for run in runs if run["kind"] == "lines"]
        elif shortcut.startswith("line "):
            chosen = [run for run in runs if run["kind"] == "lines" and run["line"] == int(shortcut.split()[1])]
        else:
            chosen = [run for run in runs if run["kind"] == shortcut]
        assert chosen, f"{clause.row}: the probe did not run '{shortcut}' on {clause.cell} ({task['skipped']})"
        for run in chosen:
            assert run["error"] is None, (clause.row, run)
            assert not keys <= set(run["passed"]), (
                f"{clause.row}: {run['shortcut']} passed {', '.join(sorted(keys))}: {clause.cell} does not refuse it")


NUMBERS = ("01", "02", "03", "04", "05", "06", "07", "08", "09")


def claimed(tasks: bool) -> list[Clause]:
    """The refuse clauses, for parametrizing; none when the table cannot be read (the tests above say why)."""
    try:
        return [clause for number in NUMBERS for clause in refusals(number, tasks)]
    except (AssertionError, KeyError, StopIteration):
        return []


@pytest.mark.parametrize("number", sorted({clause.cell[2:4] for clause in claimed(tasks=True)}))
def test_the_refused_shortcuts_of_each_task_are_refused_in_the_probe_run(notebook_probe, number):
    run, report = notebook_probe(number)
    assert report is not None, run.stderr
    for clause in refusals(number, tasks=True):
        task = next((t for t in report["tasks"] if t["cell"].endswith(f"id {clause.cell})")), None)
        assert task is not None and task["problem"] is None, (clause.row, task)
        assert_refused(clause, task)


@pytest.mark.parametrize("cell", sorted({clause.cell for clause in claimed(tasks=False)}))
def test_the_refused_shortcuts_of_a_cell_that_is_no_task_are_refused_when_it_is_probed(notebook_probe, cell):
    run, report = notebook_probe(cell[2:4], cell=cell)
    assert report is not None, run.stderr
    [task] = report["tasks"]
    assert task["problem"] is None, task["problem"]
    for clause in [c for c in claimed(tasks=False) if c.cell == cell]:
        assert_refused(clause, task)
