"""A rerun batch loses nothing: each result is stored as it arrives, a batch killed
half-way resumes without running again what is done, and a changed submission
runs again.  Store file names never come from a submission's file name."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import clean_env
from test_grading import make_notebook
from test_rerun_isolation import HELLO, results_of, wait_for, workshop_grade

pytestmark = pytest.mark.slow

LOCAL = ["--target", "local", "--run-student-code-on-this-machine"]
DIGEST = re.compile(r"^[0-9a-f]{64}\.(json|ipynb)$")


def counting(log: Path, name: str, extra: str = "") -> dict[str, str]:
    """A submission whose rerun notes its name in ``log`` (outside the rerun), then passes."""
    return {"hello": f"echo {name} >> {log}\n{extra}echo hello"}


def runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def stored(out: Path) -> dict[str, dict]:
    """The store's entries by student."""
    entries = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    return {e["result"]["student"]: e for e in entries}


def test_a_batch_killed_half_way_resumes_without_rerunning_what_is_done(tmp_path, installed_kernelspec):
    log, out, subs = tmp_path / "runs.log", tmp_path / "out", tmp_path / "subs"
    subs.mkdir()
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    names = ["ann", "ben", "cat", "dan", "eve", "fay"]
    for name in names:
        make_notebook(subs / f"{name}.ipynb", counting(log, name, "sleep 1\n"))
    first = subprocess.Popen([sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--rerun", *LOCAL,
                              "--out", str(out), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=clean_env())
    try:
        wait_for(lambda: (out / "results").is_dir() and len(list((out / "results").glob("*.json"))) >= 2, 180,
                 "two stored results")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = stored(out)
    assert 2 <= len(before) < len(names), "the batch should have been killed half-way"
    done = workshop_grade(ref, subs, "--rerun", *LOCAL, "--out", out, "--resume", "--json", tmp_path / "g.json")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "g.json").read_text())["submissions"]
    assert sorted(r["student"] for r in report) == names  # every submission, once
    assert all(r["total"] == r["max"] == 1 for r in report), report
    ran = runs(log)
    assert all(ran.count(name) == 1 for name in before), ran  # done before the kill: not run again
    assert set(ran) == set(names)
    after = stored(out)
    for name, entry in before.items():  # what was done stayed as it was
        assert after[name]["stored_at"] == entry["stored_at"], name
    assert len(ran) <= len(names) + 1  # at most the one running when the batch was killed ran twice


HOSTILE = ["$(touch pwned)", "a\nb", "..", "-rf", "con", "x" * 200]


def test_a_changed_submission_runs_again_and_names_never_become_paths(tmp_path, installed_kernelspec):
    log, out, subs, cwd = tmp_path / "runs.log", tmp_path / "out", tmp_path / "subs", tmp_path / "cwd"
    subs.mkdir()
    cwd.mkdir()
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    for n, name in enumerate(HOSTILE):
        make_notebook(subs / f"{name}.ipynb", counting(log, f"s{n}"))
    (subs / "broken.ipynb").write_text("{")

    def grade(*more: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--rerun", *LOCAL,
                               "--out", str(out), "--json", str(tmp_path / "g.json"), "-q", *more], cwd=cwd,
                              capture_output=True, text=True, timeout=300, env=clean_env())

    assert grade().returncode == 0
    assert sorted(runs(log)) == sorted(f"s{n}" for n in range(len(HOSTILE)))
    make_notebook(subs / "-rf.ipynb", {"hello": f"echo s3 >> {log}\necho changed"})  # a new version
    done = grade("--resume")
    assert done.returncode == 0, done.stderr
    assert runs(log).count("s3") == 2 and len(runs(log)) == len(HOSTILE) + 1  # only the changed one ran again
    assert f"{len(HOSTILE)} of {len(HOSTILE) + 1} submissions need no rerun" in done.stderr
    results = results_of(tmp_path / "g.json")
    assert len(results) == len(HOSTILE) + 1
    assert results["-rf"]["total"] == 0 and results["$(touch pwned)"]["total"] == 1
    assert results["broken"]["error"]
    # the store's files are named by digest only, and nothing was written anywhere else
    files = [p for folder in ("results", "executed") for p in (out / folder).iterdir()]
    assert files and all(DIGEST.match(p.name) for p in files), [p.name for p in files]
    assert sorted(p.name for p in out.iterdir()) == ["executed", "results"]
    assert list(cwd.iterdir()) == [] and not (tmp_path / "pwned").exists()


def test_resume_needs_the_store_it_resumes(tmp_path):
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    done = workshop_grade(ref, ref, "--rerun", *LOCAL, "--resume")
    assert done.returncode == 2 and "--out" in done.stderr and "Traceback" not in done.stderr
    done = workshop_grade(ref, ref, "--out", tmp_path / "out")
    assert done.returncode == 2 and "--rerun" in done.stderr
