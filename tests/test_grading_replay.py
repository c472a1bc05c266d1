"""A copy of another student's executed notebook: the grader sees the whole
class, so both submissions are flagged, each naming the other."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from harness import clean_env
from test_grading import make_notebook

from workshop.batch import grade

RECORD = "application/vnd.workshop.record+json"
SOURCES = {"hello": "%expect stdout /^hello/\necho hello", "bye": "%expect exit 0\necho bye"}


@pytest.fixture(scope="module")
def klass(tmp_path_factory, installed_kernelspec):
    """alice and bob ran the notebook themselves; carol handed in alice's file, erin
    alice's file with the records' durations changed (same session, other records)."""
    d = tmp_path_factory.mktemp("replay")
    ref = make_notebook(d / "reference.ipynb", SOURCES)
    subs = d / "subs"
    for name in ("alice", "bob"):
        subprocess.run([sys.executable, "-m", "workshop", "run", str(ref), "--out", str(d / name)],
                       capture_output=True, timeout=120, env=clean_env(), check=True)
    subs.mkdir()
    for name in ("alice", "bob"):
        shutil.copy(d / name / "reference.ipynb", subs / f"{name}.ipynb")
    shutil.copy(subs / "alice.ipynb", subs / "carol.ipynb")
    nb = json.loads((subs / "alice.ipynb").read_text())
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if RECORD in output.get("data", {}):
                output["data"][RECORD]["duration"] += 0.5
    (subs / "erin.ipynb").write_text(json.dumps(nb))
    return ref, subs


def flags(result: dict) -> dict[str, str]:
    return {f["kind"]: f["message"] for f in result["flags"]}


def check_class(results: dict[str, dict]) -> None:
    assert flags(results["bob"]) == {}
    alice, carol, erin = flags(results["alice"]), flags(results["carol"]), flags(results["erin"])
    assert set(alice) == set(carol) == {"replay", "shared-session"}
    assert "carol" in alice["replay"] and "alice" in carol["replay"]
    assert "bob" not in alice["replay"] + alice["shared-session"]
    assert "erin" in alice["shared-session"] and "erin" in carol["shared-session"]
    assert set(erin) == {"shared-session"}
    assert "alice" in erin["shared-session"] and "carol" in erin["shared-session"]
    # a flag for the instructor: the points stay what the notebook earns
    assert all(r["total"] == r["max"] for r in results.values())


def test_copies_of_an_executed_notebook_are_flagged_both_ways(klass):
    ref, subs = klass
    results = {r["student"]: r for r in grade(ref, [subs]).results}
    check_class(results)


def test_copies_are_flagged_in_a_parallel_grade_and_on_the_terminal(klass, tmp_path):
    ref, subs = klass
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--jobs", "2",
                           "--json", str(tmp_path / "g.json")], capture_output=True, text=True, timeout=120,
                          env=clean_env(COLUMNS="250"))
    assert done.returncode == 0, done.stderr
    check_class({r["student"]: r for r in json.loads((tmp_path / "g.json").read_text())["submissions"]})
    assert "replay" in done.stdout and "shared-session" in done.stdout


def test_copies_are_flagged_in_a_rerun_too(klass):
    """A rerun makes fresh records; the evidence of a copy is the student's own file."""
    ref, subs = klass
    report = grade(ref, [subs / "alice.ipynb", subs / "carol.ipynb", subs / "bob.ipynb"], rerun=True,
                   target="local", run_student_code_on_this_machine=True, jobs=3, timeout=30)
    results = {r["student"]: r for r in report.results}
    assert "carol" in flags(results["alice"])["replay"] and "alice" in flags(results["carol"])["replay"]
    assert flags(results["bob"]) == {}
