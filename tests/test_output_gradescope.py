"""`workshop grade --gradescope results.json`: Gradescope's autograder format, written for a
submission the real kernel executed, as a Gradescope autograder's run_autograder would ask."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from harness import clean_env
from test_grading import make_notebook, run_cells

SETUP = 'cd "$(mktemp -d)"\necho ready'
GREET = "%expect stdout /^hello/\necho hello world"
FILES = ("mkdir -p rootfs/bin\n%%check --points 3 --name rootfs\n"
         "test -d rootfs/bin || echo 'FAIL: rootfs/bin is missing'")
HIDDEN = "\n%%check --hidden --points 2 --name etc\ntest -d rootfs/etc || echo 'FAIL: no etc'"


def grade_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", "grade", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=clean_env())


@pytest.fixture(scope="module")
def lab(tmp_path_factory, installed_kernelspec):
    """A reference, and a student's submission executed by the kernel: its greeting is wrong."""
    d = tmp_path_factory.mktemp("gradescope")
    ref = make_notebook(d / "reference.ipynb", {"setup": SETUP, "greet": GREET, "files": FILES})
    subs = d / "submission"
    subs.mkdir()
    mine = make_notebook(d / "mine.ipynb", {"setup": SETUP, "greet": "%expect stdout /^hello/\necho bye world",
                                            "files": FILES})
    run_cells(mine, [[0, 1, 2]], subs / "mine.ipynb")
    return d, ref, subs


def test_results_json_holds_the_score_and_a_test_per_check(lab, tmp_path):
    _, ref, subs = lab
    out, full = tmp_path / "results" / "results.json", tmp_path / "full.json"
    out.parent.mkdir()
    done = grade_cli(ref, subs, "--gradescope", out, "--json", full, "-q")
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    [graded] = json.loads(full.read_text(encoding="utf-8"))["submissions"]
    assert results["score"] == graded["total"] == 3
    tests = {t["name"]: t for t in results["tests"]}
    assert list(tests) == list(graded["checks"])  # every check, in the reference's order
    for name, test in tests.items():
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert (test["score"], test["max_score"]) == (graded["checks"][name]["earned"], graded["checks"][name]["points"])
        assert test["visibility"] == "visible"
    [greet] = [t for name, t in tests.items() if name.startswith("cell 2")]
    assert greet["status"] == "failed" and greet["score"] == 0
    assert greet["output"] == "stdout does not match /^hello/\nexpected: stdout matching /^hello/\ngot: bye world"
    [files] = [t for name, t in tests.items() if name.endswith(":rootfs")]
    assert (files["status"], files["score"], files["max_score"], files["output"]) == ("passed", 3, 3, "")
    assert results["output"] == ""  # no flag


def test_a_flag_reaches_the_output_students_see(lab, tmp_path):
    d, ref, _ = lab
    nb = json.loads((lab[2] / "mine.ipynb").read_text(encoding="utf-8"))
    greet = next(c for c in nb["cells"] if c.get("id") == "greet")
    for output in greet["outputs"]:
        if output.get("name") == "stdout":
            output["text"] = "hello world\n"  # the shown output edited after the run
    edited = tmp_path / "edited.ipynb"
    edited.write_text(json.dumps(nb), encoding="utf-8")
    out = tmp_path / "results.json"
    assert grade_cli(ref, edited, "--gradescope", out, "-q").returncode == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["output"].startswith("output-edited (cell 2 (id greet)): shown stdout differ from the record")
    assert results["score"] == 3


def test_more_than_one_submission_is_refused_before_grading(lab, tmp_path):
    _, ref, subs = lab
    out = tmp_path / "results.json"
    done = grade_cli(ref, subs / "mine.ipynb", subs / "mine.ipynb", "--gradescope", out)
    assert done.returncode == 2
    assert ("--gradescope writes the results.json of one submission, and 2 were given: grade each submission on "
            "its own") in " ".join(done.stderr.split())
    assert not out.exists()


def test_hidden_checks_are_hidden_tests_scored_by_a_rerun(lab, tmp_path):
    d, _, subs = lab
    ref = make_notebook(d / "hidden.ipynb", {"setup": SETUP, "greet": GREET, "files": FILES + HIDDEN})
    out = tmp_path / "results.json"
    done = grade_cli(ref, subs, "--gradescope", out)
    assert done.returncode == 2 and not out.exists()
    assert ("the reference has hidden checks, which only --rerun scores: a Gradescope score without them would "
            "count them as failed") in " ".join(done.stderr.split())
    done = grade_cli(ref, subs, "--gradescope", out, "--rerun", "--target", "local",
                     "--run-student-code-on-this-machine", "-q")
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    tests = {t["name"]: t for t in results["tests"]}
    [hidden] = [t for name, t in tests.items() if name.endswith(":etc")]
    assert (hidden["visibility"], hidden["status"], hidden["max_score"]) == ("hidden", "failed", 2)
    assert "no etc" in hidden["output"]
    assert results["score"] == 3 and all(t["visibility"] == "visible" for t in tests.values() if t is not hidden)
