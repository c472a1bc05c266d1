"""Authoring: a source notebook becomes a student copy and a reference; bad sources are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from assignment_lab import (
    ANSWER,
    BOX,
    COUNT,
    HIDDEN_POINTS,
    HIDDEN_TEXT,
    MANUAL_POINTS,
    SOLUTION_TEXT,
    VISIBLE_POINTS,
    make_source,
    source_cells,
)

from workshop.assign import CODE, MARKDOWN, check_source, release, replace_solutions, without_hidden_checks
from workshop.errors import AssignmentError
from workshop.grading import load_reference


def assign(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "WORKSHOP_TARGET")}
    return subprocess.run([sys.executable, "-m", "workshop", "assign", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


# ---- the pieces ---------------------------------------------------------------------
def test_solution_regions_become_placeholders_indented_as_their_marker():
    code = "for f in *; do\n  ### BEGIN SOLUTION\n  echo \"$f\"\n  ### END SOLUTION\ndone\n# BEGIN SOLUTION\nls\n# END SOLUTION"
    assert replace_solutions(code, CODE) == "for f in *; do\n  # YOUR CODE HERE\ndone\n# YOUR CODE HERE"
    text = "Why?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!--END SOLUTION-->\nMore."
    assert replace_solutions(text, MARKDOWN) == "Why?\nYOUR ANSWER HERE\nMore."
    with pytest.raises(AssignmentError, match="line 1: ### BEGIN SOLUTION has no ### END SOLUTION"):
        replace_solutions("### BEGIN SOLUTION\nls", CODE)
    # a Go (or C) file written with %%file: its markers and its placeholder are // comments, so both copies compile
    go = "%%file join.go\nfunc join() {\n\t// BEGIN SOLUTION\n\twrite()\n\t// END SOLUTION\n}\n"
    assert replace_solutions(go, CODE) == "%%file join.go\nfunc join() {\n\t// YOUR CODE HERE\n}\n"
    with pytest.raises(AssignmentError, match="line 2: ### END SOLUTION has no ### BEGIN SOLUTION"):
        replace_solutions("ls\n// END SOLUTION", CODE)


def test_hidden_sections_are_cut_and_the_rest_kept_as_written():
    source = ("echo a\n%%check --name one\ntrue\n%%check --hidden --name two\n%expect stdout /a/\nfalse\n"
              "%%check --name three\n  test -e x\n")
    assert without_hidden_checks(source) == "echo a\n%%check --name one\ntrue\n%%check --name three\n  test -e x\n"
    assert without_hidden_checks("echo a\n") == "echo a\n"


# ---- a release -------------------------------------------------------------------------
@pytest.fixture
def released(tmp_path):
    source = make_source(tmp_path / "lab.ipynb")
    release([source], tmp_path / "out", verify_reference=False)
    student = json.loads((tmp_path / "out" / "student" / "lab.ipynb").read_text())
    reference = json.loads((tmp_path / "out" / "reference" / "lab.ipynb").read_text())
    return tmp_path, student, reference


def test_the_student_copy_holds_no_solution_and_no_hidden_check(released):
    _, student, _ = released
    text = json.dumps(student)
    for secret in SOLUTION_TEXT + HIDDEN_TEXT + ["--hidden", "BEGIN SOLUTION", "count-hidden"]:
        assert secret not in text, secret
    cells = {c["id"]: c for c in student["cells"]}
    assert list(cells) == ["intro", "setup", "box-text", "box", "count-text", "count", "why"]
    assert "# YOUR CODE HERE" in "".join(cells["box"]["source"])
    assert "%%check --name box-exists --points 2" in "".join(cells["box"]["source"])
    assert "".join(cells["why"]["source"]).endswith("YOUR ANSWER HERE")
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in student["cells"] if c["cell_type"] == "code")
    assert student["metadata"]["kernelspec"]["name"] == "workshop"
    assert student["metadata"]["workshop"]["target"] == "local"
    assert student["metadata"]["workshop"]["assignment"] == {
        "name": "lab", "points": VISIBLE_POINTS + HIDDEN_POINTS, "hidden_points": HIDDEN_POINTS,
        "manual_points": MANUAL_POINTS}
    assert student["nbformat"] == 4 and student["nbformat_minor"] >= 5


def test_cells_say_what_they_are(released):
    _, student, reference = released
    meta = {c["id"]: c["metadata"] for c in student["cells"]}
    assert meta["box"]["workshop"]["task"] == {"points": 1 + 2 + 3}  # its hidden check's points too
    assert meta["count"]["workshop"]["task"] == {"points": 1 + 1 + 2}  # and the hidden cell's below it
    assert meta["why"]["workshop"]["manual_points"] == MANUAL_POINTS
    assert meta["setup"]["workshop"]["locked"] is True and meta["setup"]["editable"] is False
    assert meta["box"].get("editable", True) is True and meta["box"]["deletable"] is False
    ref_meta = {c["id"]: c["metadata"] for c in reference["cells"]}
    assert ref_meta["count-hidden"]["workshop"] == {"hidden": True, "locked": True}


def test_the_reference_holds_everything_the_grader_uses(released):
    tmp_path, student, reference = released
    text = json.dumps(reference)
    for secret in SOLUTION_TEXT + HIDDEN_TEXT:
        assert secret in text, secret
    assert [c["id"] for c in reference["cells"]] == [c.id for c in source_cells()]
    ref = load_reference(tmp_path / "out" / "reference" / "lab.ipynb")
    assert ref.max_points == VISIBLE_POINTS + HIDDEN_POINTS and ref.hidden_points == HIDDEN_POINTS
    assert [(t.label, t.kind, t.manual_points) for t in ref.tasks] == [
        ("box", "code", 0), ("count", "code", 0), ("why", "markdown", MANUAL_POINTS)]
    assert {c.key for c in ref.checks if c.hidden} == {"box:note-says-hello", "cell 4:middle-line"}
    # every visible check of the reference is in the student copy, unchanged
    student_ref = load_reference(tmp_path / "out" / "student" / "lab.ipynb")
    assert {(c.key, c.digest) for c in student_ref.checks} == {(c.key, c.digest) for c in ref.checks if not c.hidden}


def test_cells_without_ids_get_ids_from_their_position(tmp_path):
    source = make_source(tmp_path / "old.ipynb")
    nb = json.loads(source.read_text())
    nb["nbformat_minor"] = 4
    for cell in nb["cells"]:
        cell.pop("id")
    source.write_text(json.dumps(nb))
    releases = release([source], tmp_path / "out", verify_reference=False)
    assert any("had no id" in note for note in releases[0].notes)
    student = json.loads((tmp_path / "out" / "student" / "old.ipynb").read_text())
    assert [c["id"] for c in student["cells"]] == ["cell-1", "cell-2", "cell-3", "cell-4", "cell-5", "cell-6",
                                                   "cell-8"]


# ---- bad sources ------------------------------------------------------------------------
def _with(index: int, source: str | None = None, **workshop) -> list:
    cells = source_cells()
    if source is not None:
        cells[index].source = source
    if workshop:
        cells[index].metadata.setdefault("workshop", {}).update(workshop)
    return cells


BAD_SOURCES = {
    "begin-without-end": (_with(3, BOX.replace("### END SOLUTION\n", "")), "cell 4: line 2: ### BEGIN SOLUTION has no "
                                                                          "### END SOLUTION below it"),
    "end-without-begin": (_with(5, COUNT.replace("### BEGIN SOLUTION\n", "")), "cell 6: line 4: ### END SOLUTION has "
                                                                              "no ### BEGIN SOLUTION above it"),
    "nested-begin": (_with(3, BOX.replace("echo hello", "### BEGIN SOLUTION\necho hello")),
                     "cell 4: line 4: ### BEGIN SOLUTION comes before the region opened on line 2"),
    "markdown-unbalanced": (_with(7, "Why?\n<!-- BEGIN SOLUTION -->\nBecause."),
                            "cell 8: line 2: <!-- BEGIN SOLUTION --> has no <!-- END SOLUTION --> below it"),
    "unnamed-check": (_with(5, COUNT.replace("%%check --name three-lines", "%%check")),
                      "cell 6: line 6: %%check has no --name"),
    "hidden-check-in-no-task": (_with(1, '%expect exit 0\ncd "$(mktemp -d)"\n%%check --hidden --name h\ntrue'),
                                "cell 2: line 3: a hidden check in a cell with no task"),
    "hidden-cell-before-any-task": (_with(1, hidden=True), "cell 2: a hidden cell of checks comes before any task"),
    "locked-task": (_with(3, locked=True), "cell 4: a task cannot be locked"),
    "wrong-marker": (_with(1, "<!-- BEGIN SOLUTION -->\nls\n<!-- END SOLUTION -->"),
                     "cell 2: line 1: <!-- BEGIN SOLUTION --> does not mark a solution in a code cell"),
    "check-in-solution": (_with(3, BOX.replace("echo hello > box/note", "%%check --name x\ntrue")),
                          "cell 4: line 4: a check inside the solution region of lines 2-6"),
    "bad-check": (_with(5, COUNT.replace("--name three-lines", "--points many --name three-lines")),
                  "cell 6: %%check --points many --name three-lines: --points takes a number"),
    "manual-points-text": (_with(7, manual_points="two"), "cell 8: metadata.workshop.manual_points is 'two'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_a_bad_source_gets_one_clear_error_and_nothing_is_written(tmp_path, case):
    cells, expected = BAD_SOURCES[case]
    source = make_source(tmp_path / "lab.ipynb", cells)
    done = assign(str(source), "--out", str(tmp_path / "out"), "--no-verify")
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("  cell ")]
    assert len(errors) == 1, done.stderr
    assert "nothing was written" in done.stderr and not (tmp_path / "out").exists()


def test_duplicate_ids_and_a_source_without_tasks(tmp_path):
    cells = source_cells()
    cells[4].id = "box"
    problems, _, _ = check_source(json.loads(json.dumps({"cells": cells})))
    assert problems == ["cell 5: has the id 'box' of cell 4; give each cell its own id"]
    plain = [c for c in source_cells() if c.id in ("intro", "setup")]
    problems, _, _ = check_source(json.loads(json.dumps({"cells": plain})))
    assert problems and problems[0].startswith("no cell is a task")


def test_two_sources_with_one_bad_release_nothing(tmp_path):
    good = make_source(tmp_path / "good.ipynb")
    bad = make_source(tmp_path / "bad.ipynb", _with(3, locked=True))
    done = assign(str(good), str(bad), "--out", str(tmp_path / "out"), "--no-verify")
    assert done.returncode == 2 and "bad.ipynb: cannot be released" in done.stderr
    assert not (tmp_path / "out").exists()


# ---- verification: the reference's own solution must pass --------------------------------
@pytest.mark.slow
def test_assign_verifies_the_reference_and_writes_both_copies(tmp_path, installed_kernelspec):
    source = make_source(tmp_path / "lab.ipynb")
    done = assign(str(source), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "released lab: 3 tasks, 11 points from checks (5 of them hidden), 2 to grade by hand" in done.stdout
    assert (tmp_path / "out" / "student" / "lab.ipynb").exists()
    assert (tmp_path / "out" / "reference" / "lab.ipynb").exists()
    assert "a Markdown answer" not in done.stderr  # the answer has manual points


@pytest.mark.slow
def test_a_solution_that_fails_a_hidden_check_is_not_released(tmp_path, installed_kernelspec):
    cells = _with(3, BOX.replace("echo hello > box/note", "echo bye > box/note"))
    cells[5].source = COUNT.replace("wc -l < lines.txt\n###", "wc -l < lines.txt; false\n###")
    source = make_source(tmp_path / "lab.ipynb", cells)
    done = assign(str(source), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout
    assert "the reference's own solution does not pass; nothing was written" in done.stderr
    assert "cell 4: the check box:note-says-hello fails on the reference's own solution: box/note does not say " \
           "hello" in done.stderr
    assert "cell 6: the cell fails on the reference's own solution (exit status 1)" in done.stderr
    assert not (tmp_path / "out").exists()
    assert ANSWER not in done.stderr
