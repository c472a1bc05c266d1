"""`workshop probe` on notebooks 02, 03 and 04: no shortcut answer earns a point of any task check.

Each test runs the real CLI on the local target through the session's ``notebook_probe`` fixture
(tests/conftest.py), which tests/test_coverage_table.py reads too: one probe per notebook and session."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def assert_no_weak_check(run, report, tasks: set[str]) -> None:
    assert report is not None, run.stderr
    assert run.returncode == 0, run.stdout + run.stderr
    assert report["weak"] == []
    assert {task["task"] for task in report["tasks"]} == tasks
    for task in report["tasks"]:
        assert task["problem"] is None, task["problem"]
        assert task["full_marks"] == [], task["task"]
        tried = task["shortcuts"]
        assert "empty" in {s["kind"] for s in tried}, task  # a one-line solution's removal is the empty answer
        for shortcut in tried:
            assert shortcut["error"] is None, (task["task"], shortcut)
            if shortcut["kind"] != "lines":  # a removed line may keep some checks, never all of them
                assert shortcut["passed"] == [] and shortcut["earned"] == 0, (task["task"], shortcut)


def test_notebook_02_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("02")
    assert_no_weak_check(run, report, {"container-sh"})
    task = report["tasks"][0]
    assert "fresh-every-time" in " ".join(task["checks"])  # the hidden check was put back and run
    assert task["skipped"] == ["printf: the answer is the text of a file (%%file), not commands that print"]


def test_notebook_03_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("03")
    assert_no_weak_check(run, report, {"predict-ps"})
    kinds = {s["kind"] for s in report["tasks"][0]["shortcuts"]}
    assert "printf" in kinds  # copying the printed prediction earns nothing: the check reads the variables


def test_notebook_04_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("04")
    assert_no_weak_check(run, report, {"pids-limit"})
    kinds = {s["kind"] for s in report["tasks"][0]["shortcuts"]}
    assert "printf" in kinds  # printing "pids.max of ...: 16" earns nothing: the check reads pids.max
