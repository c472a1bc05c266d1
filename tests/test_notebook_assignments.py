"""Every workshop notebook is an assignment whose task checks need the student's work.

For each notebook, ``workshop assign``'s code writes the student copy; that copy,
run unfilled with the reference's checks put back (hidden ones too, as a grader's
rerun does), must fail every task check.  A task check that passes without the
student's work grades nothing: the failure names it.  That the reference's own
solutions pass every check is test_notebooks.py's (each notebook runs there), so the
release here does not run the reference again; assign's verification is test_assign.py's.  ``00-demo`` shows the kernel itself and
is no assignment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_notebooks import NOTEBOOKS, leftovers_cleanup

from workshop.assign import release
from workshop.grading import restore_reference
from workshop.runner import run_notebook

pytestmark = pytest.mark.slow

ASSIGNMENTS = [nb for nb in NOTEBOOKS if nb.stem != "00-demo"]


@pytest.fixture(autouse=True)
def root_only():
    if os.geteuid() != 0:
        pytest.skip("the workshop notebooks need root")


@pytest.mark.parametrize("notebook", ASSIGNMENTS, ids=lambda p: p.stem)
def test_unfilled_student_copy_fails_every_task_check(notebook, tmp_path, installed_kernelspec):
    try:
        rel = release([notebook], tmp_path / "release", verify_reference=False)[0]
        checked = [t for t in rel.ref.tasks if t.checks]
        assert checked, f"{notebook.name}: no task has a check, so nothing a student does is graded by one"

        student = json.loads((tmp_path / "release" / "student" / notebook.name).read_text())
        restore_reference(rel.ref, student)
        unfilled = tmp_path / "unfilled" / notebook.name
        unfilled.parent.mkdir()
        unfilled.write_text(json.dumps(student, indent=1))
        result = run_notebook(unfilled, out_dir=tmp_path / "out", target="local", timeout=120,
                              allow_errors=True, workdir=notebook.parent)
    finally:
        leftovers_cleanup()
    by_key = {check.key: check for check in result.checks}
    task_keys = [key for task in checked for key in task.checks]
    assert [key for key in task_keys if key not in by_key] == [], "task checks that did not run"
    passing = [key for key in task_keys if by_key[key].passed]
    assert passing == [], f"{notebook.name}: these task checks pass without the student's work: {passing}"


def test_every_numbered_notebook_but_the_demo_is_an_assignment():
    assert [p.stem for p in NOTEBOOKS if p not in ASSIGNMENTS] == ["00-demo"]
    assert all(Path(p).exists() for p in ASSIGNMENTS)
