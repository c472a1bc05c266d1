"""Notebooks 05 and 07: every task checked on state, on this machine.

- `workshop probe` (the real CLI, local target) finds no weak check in either notebook.
- The shortcuts that used to earn full marks are graded through real reruns
  (`workshop grade --rerun --target local`) and earn less than the task's points:
  notebook 5's `plain-kill` done with `runc kill` (the method the task forbids), and
  notebook 7's `commit` as a hand-made layer that never touches the container.
The honest answer in the same batch keeps every point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import clean_env
from test_notebooks import NOTEBOOKS, mounts

from workshop.records import multiline_text

LOCAL = ("--target", "local", "--run-student-code-on-this-machine")
NB05 = next(p for p in NOTEBOOKS if p.stem == "05-oci-runtimes")
NB07 = next(p for p in NOTEBOOKS if p.stem == "07-docker-by-hand")

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the notebooks need root on the local target"), pytest.mark.slow, pytest.mark.root]
FOLDERS = {NB05: "/var/tmp/container-workshop/05-oci", NB07: "/var/tmp/container-workshop/07-docker"}


def leftovers_cleanup(notebook: Path) -> None:
    """Undo what a failed run of this notebook may have left: its own folder only (others may be running theirs)."""
    folder = FOLDERS[notebook]
    for point in reversed(mounts()):
        if point.startswith(folder + "/"):
            subprocess.run(["umount", "-l", point], check=False)
    if notebook is NB05:
        for name in ("demo", "once-demo", "watched"):
            subprocess.run(["runc", "delete", "--force", name], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", folder], check=False)


def workshop(*args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = {**clean_env(), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_probed_without_weak_check(run: subprocess.CompletedProcess, notebook: dict | None, task: str) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no shortcut passed a check" in run.stdout + run.stderr, run.stdout + run.stderr
    assert notebook is not None and notebook["weak"] == []
    (probed,) = [t for t in notebook["tasks"] if t["task"] == task]
    assert not probed.get("problem"), probed  # the reference passed its own checks, so the shortcuts were run
    assert probed["shortcuts"] and probed["full_marks"] == [], probed


def test_notebook_05_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("05")  # the session's one probe of notebook 05 (tests/conftest.py)
    assert_probed_without_weak_check(run, report, "plain-kill")


def test_notebook_07_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("07")  # the session's one probe of notebook 07 (tests/conftest.py)
    assert_probed_without_weak_check(run, report, "commit")


# ---- the named shortcuts, graded through real reruns -------------------------------------
def _release(notebook: Path, out: Path) -> tuple[Path, dict]:
    try:
        done = workshop("assign", str(notebook), "--out", str(out), "--target", "local", timeout=900)
    finally:
        leftovers_cleanup(notebook)
    assert done.returncode == 0, done.stdout + done.stderr
    student = json.loads((out / "student" / notebook.name).read_text())
    return out / "reference" / notebook.name, student


def _answer(student: dict, path: Path, cell_id: str, answer: str) -> Path:
    nb = json.loads(json.dumps(student))
    cell = next(c for c in nb["cells"] if c["id"] == cell_id)
    source = multiline_text(cell["source"])
    assert source.count("# YOUR CODE HERE") == 1, source
    cell["source"] = source.replace("# YOUR CODE HERE", answer)
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _grade(notebook: Path, reference: Path, subs: Path, tmp_path: Path, label: str) -> tuple[dict, dict]:
    try:
        done = workshop("grade", str(reference), str(subs), "--rerun", *LOCAL, "--json", str(tmp_path / "g.json"))
    finally:
        leftovers_cleanup(notebook)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads((tmp_path / "g.json").read_text())
    task = next(t for t in report["tasks"] if t["label"] == label)
    return {r["student"]: r for r in report["submissions"]}, task


def _earned(result: dict, task: dict) -> float:
    return sum(result["checks"][k]["earned"] for k in task["checks"])


def _full(result: dict, task: dict) -> float:
    return sum(result["checks"][k]["points"] for k in task["checks"])


def test_nb05_runc_kill_earns_less_than_a_plain_kill(tmp_path, installed_kernelspec):
    reference, student = _release(NB05, tmp_path / "release")
    subs = tmp_path / "subs"
    subs.mkdir()
    _answer(student, subs / "honest.ipynb", "nb05-plain-kill", 'kill "$(cat watched.sleep.pid)"')
    _answer(student, subs / "runckill.ipynb", "nb05-plain-kill", "runc kill watched KILL")
    _answer(student, subs / "runcall.ipynb", "nb05-plain-kill", "runc kill --all watched TERM")
    _answer(student, subs / "nine.ipynb", "nb05-plain-kill", 'kill -9 "$(cat watched.sleep.pid)"')
    _answer(student, subs / "inside.ipynb", "nb05-plain-kill",
            "runc exec watched kill \"$(sed -n 's/^NSpid:.*\\s//p' /proc/$(cat watched.sleep.pid)/status)\"")
    results, task = _grade(NB05, reference, subs, tmp_path, "plain-kill")
    honest = results["honest"]
    assert _full(honest, task) == 2
    assert _earned(honest, task) == 2, honest["checks"]
    # runc's SIGKILL and kill -9: no SIGTERM, neither check; runc kill --all and a kill from inside the
    # container end the sleep with SIGTERM (1 point) but not from the host's side
    earned = {name: _earned(results[name], task) for name in ("runckill", "nine", "runcall", "inside")}
    assert earned == {"runckill": 0, "nine": 0, "runcall": 1, "inside": 1}, {n: results[n]["checks"] for n in earned}
    sent = {n: results[n]["checks"] for n in ("runckill", "runcall", "inside")}
    host = next(k for k in task["checks"] if "killed-from-the-host" in k)
    assert "not SIGTERM" in sent["runckill"][host]["message"], sent["runckill"][host]
    assert "runc" in sent["runcall"][host]["message"], sent["runcall"][host]
    assert "inside the container" in sent["inside"][host]["message"], sent["inside"][host]


def test_nb07_a_hand_made_layer_earns_less_than_a_commit(tmp_path, installed_kernelspec):
    reference, student = _release(NB07, tmp_path / "release")
    subs = tmp_path / "subs"
    subs.mkdir()
    _answer(student, subs / "honest.ipynb", "nb07-commit", "cp -a containers/c1/upper layers/commit-c1")
    _answer(student, subs / "handmade.ipynb", "nb07-commit",
            "mkdir -p layers/commit-c1 && echo 'container c1 was here' > layers/commit-c1/note")
    _answer(student, subs / "linked.ipynb", "nb07-commit", "cp -al containers/c1/upper layers/commit-c1")
    results, task = _grade(NB07, reference, subs, tmp_path, "commit")
    honest = results["honest"]
    assert _full(honest, task) == 3
    assert _earned(honest, task) == 3, honest["checks"]
    # the hand-made layer lacks c1's token (only the hidden copy check passes); links share c1's files
    earned = {name: _earned(results[name], task) for name in ("handmade", "linked")}
    assert earned == {"handmade": 1, "linked": 2}, {n: results[n]["checks"] for n in earned}
    committed = next(k for k in task["checks"] if "committed" in k)
    assert "token" in results["handmade"]["checks"][committed]["message"], results["handmade"]["checks"][committed]
