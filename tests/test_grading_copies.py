"""Copies whose ids were rewritten: a student hands in another's executed
notebook with every record's kernel session replaced by a new random id and
its start times shifted.  Ids are the copier's to choose; what the run printed
(times, process ids, inode numbers, random bytes) is not, and no two honest
runs print the same."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from harness import clean_env
from test_grading import make_notebook

RECORD = "application/vnd.workshop.record+json"
# Cells that print what differs on every run, and cells whose output is the same on every run.
SOURCES = {
    "clock": "%expect exit 0\ndate +%s%N",
    "pid": "%expect exit 0\necho \"my shell is $$\"",
    "inode": "%expect exit 0\nf=$(mktemp) && stat -c %i \"$f\"",
    "random": "%expect exit 0\nhead -c 8 /dev/urandom | od -An -tx1",
    "hello": "%expect stdout /^hello/\necho hello",
    "kernel": "%expect exit 0\nuname -s",
}
HONEST = ("alice", "bob", "dave", "frank")


def renamed_copy(source, dest) -> None:
    """``source`` with every record's session a new random id and its start 3 h 13 min later."""
    nb = json.loads(source.read_text())
    session = secrets.token_hex(16)
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            record = output.get("data", {}).get(RECORD)
            if record:
                record["session"] = session
                started = datetime.fromisoformat(record["started"]) + timedelta(hours=3, minutes=13)
                record["started"] = started.isoformat(timespec="milliseconds")
    dest.write_text(json.dumps(nb, indent=1))


@pytest.fixture(scope="module")
def klass(tmp_path_factory, installed_kernelspec):
    """Four students ran the notebook themselves; carol handed in alice's run renamed."""
    d = tmp_path_factory.mktemp("copies")
    ref = make_notebook(d / "reference.ipynb", SOURCES)
    subs = d / "subs"
    subs.mkdir()
    for name in HONEST:
        subprocess.run([sys.executable, "-m", "workshop", "run", str(ref), "--out", str(d / name)],
                       capture_output=True, timeout=120, env=clean_env(), check=True)
        shutil.copy(d / name / "reference.ipynb", subs / f"{name}.ipynb")
    renamed_copy(subs / "alice.ipynb", subs / "carol.ipynb")
    return ref, subs


def grade_cli(ref, subs, out, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), *map(str, subs),
                           "--json", str(out), *extra], capture_output=True, text=True, timeout=600,
                          env=clean_env(COLUMNS="250"))
    assert done.returncode == 0, done.stderr
    return done, json.loads(out.read_text())


def flags(report: dict) -> dict[str, dict[str, dict]]:
    return {r["student"]: {f["kind"]: f for f in r["flags"]} for r in report["submissions"]}


def assert_copy_caught(report: dict, honest: tuple[str, ...]) -> None:
    found = flags(report)
    for name in honest:
        assert found[name] == {}, f"{name} ran the notebook honestly and is flagged: {found[name]}"
    alice, carol = found["alice"], found["carol"]
    assert set(alice) == set(carol) == {"same-outputs"}  # the ids tie nothing: no replay, no shared session
    assert "carol" in alice["same-outputs"]["message"] and "alice" in carol["same-outputs"]["message"]
    assert alice["same-outputs"]["others"] == ["carol"] and carol["same-outputs"]["others"] == ["alice"]
    assert carol["same-outputs"]["similarity"] >= 0.9
    assert "4 of the 4 cells whose output differs between runs" in carol["same-outputs"]["message"]
    [pair] = report["similar_pairs"]
    assert sorted(pair["students"]) == ["alice", "carol"] and pair["similarity"] >= 0.9
    assert pair["why"].startswith("The outputs of 4 of the 4 cells") and pair["why"].count(".") == 2  # "0.xx" and end


def test_honest_runs_are_not_flagged_and_a_renamed_copy_is(klass, tmp_path):
    ref, subs = klass
    done, report = grade_cli(ref, [subs], tmp_path / "g.json")
    assert_copy_caught(report, HONEST[1:])
    assert "same-outputs" in done.stdout
    # a flag for the instructor: the points stay what the notebook earns
    assert all(r["total"] == r["max"] for r in report["submissions"])


@pytest.mark.slow
def test_honest_runs_of_the_shipped_demo_are_not_flagged(tmp_path, installed_kernelspec):
    """Four honest runs of notebooks/00-demo.ipynb: nothing it prints varies, so nothing ties them."""
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "notebooks" / "00-demo.ipynb"
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in HONEST:
        subprocess.run([sys.executable, "-m", "workshop", "run", str(demo), "--out", str(tmp_path / name)],
                       capture_output=True, timeout=120, env=clean_env(), check=False)
        shutil.copy(tmp_path / name / "00-demo.ipynb", subs / f"{name}.ipynb")
    _, report = grade_cli(demo, [subs], tmp_path / "g.json")
    assert {name: found for name, found in flags(report).items() if found} == {}
    assert report["similar_pairs"] == []


def test_a_renamed_copy_is_caught_in_a_rerun_even_in_a_class_of_two(klass, tmp_path):
    """Two submissions only: from their records every cell agrees, so nothing tells which
    cells vary; the reruns print new values there, and the copy stands out."""
    ref, subs = klass
    _, report = grade_cli(ref, [subs / "alice.ipynb", subs / "carol.ipynb", subs / "bob.ipynb"],
                          tmp_path / "g.json", "--rerun", "--target", "local", "--run-student-code-on-this-machine",
                          "--timeout", "30", "--jobs", "2")
    assert_copy_caught(report, ("bob",))
    _, report = grade_cli(ref, [subs / "alice.ipynb", subs / "carol.ipynb"], tmp_path / "two.json", "--rerun",
                          "--target", "local", "--run-student-code-on-this-machine", "--timeout", "30")
    assert_copy_caught(report, ())
