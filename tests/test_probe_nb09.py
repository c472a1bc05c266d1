"""Notebook 9 (the container in Go): its tasks are checked on what the container left in the system.

- `workshop probe` finds no weak check in it (the empty answer and each line of a solution
  removed earn less than the task's points), on this machine: the session's one probe of it,
  which tests/test_coverage_table.py reads too.
- The answers that only look right are graded by a real `workshop grade --rerun`, both in one
  submission, and earn nothing: a root filesystem never entered (no chroot: a chdir into it, proc
  mounted on the host's /proc path in the container's mount namespace, the marker printed when the
  command ends in `ls /`) and a cgroup that is a plain directory, with the text the step prints
  written by `join`.  The messages show that the containers ran and were looked at from the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import clean_env
from test_notebooks import NOTEBOOKS, leftovers_cleanup

from workshop.records import multiline_text
from workshop.tasks import CODE, solution_regions

NB09 = next(p for p in NOTEBOOKS if p.stem == "09-container-in-go")
LOCAL = ("--target", "local", "--run-student-code-on-this-machine")
PLACEHOLDER = "// YOUR CODE HERE"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="notebook 9 needs root: namespaces, mounts, cgroups"),
    pytest.mark.skipif(shutil.which("go") is None, reason="notebook 9 needs Go: bash scripts/setup --go"),
    pytest.mark.slow,
    pytest.mark.root,
]

# no chroot: the working directory moved into the root filesystem, proc mounted over the host's
# /proc path (in the container's mount namespace), and the marker printed for a command ending in `ls /`
FAKE_ROOTFS = [
    'must(os.Chdir(rootfs))\n'
    '\tmust(syscall.Mount("proc", "/proc", "proc", 0, ""))\n'
    '\tif last := os.Args[len(os.Args)-1]; len(last) >= 4 && last[len(last)-4:] == "ls /" {\n'
    '\t\tos.Stdout.WriteString("ROOTFS-OF-THE-CONTAINER\\n")\n'
    '\t}',
]
# a cgroup that is no cgroup: a plain directory, and the lines the step shows, printed by join
FAKE_CGROUP = [
    'path = "/var/tmp/container-workshop/09-go/" + name\n\tmust(os.Mkdir(path, 0o755))',
    'os.Stdout.WriteString("the container ended with status 137\\nits limit: 52428800 bytes\\n")',
]


def workshop(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean_env(), "COLUMNS": "250"})


@pytest.mark.notebook_probe
def test_notebook_09_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("09")  # the session's one probe of notebook 09 (tests/conftest.py)
    assert report is not None, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert report["weak"] == []
    tasks = {t["task"]: t for t in report["tasks"]}
    assert set(tasks) == {"add-a-filesystem", "add-cgroups"}
    runs = {}
    for name, task in tasks.items():
        assert task["problem"] is None and task["full_marks"] == [], task
        assert all(s["error"] is None for s in task["shortcuts"]), task["shortcuts"]
        runs[name] = {s["shortcut"].split(": ", 1)[-1]: s for s in task["shortcuts"]}
    # each line of a solution is needed, and the check that needs it is the one meant to
    fs = {line: {key.split(":", 1)[1] for key in run["passed"]} for line, run in runs["add-a-filesystem"].items()}
    assert fs["empty answer"] == fs["must(syscall.Chroot(rootfs))"] == set(), fs
    assert "sees-its-rootfs" not in fs['must(os.Chdir("/"))'], fs  # the working directory outside its root
    assert "own-proc" not in fs['must(syscall.Mount("proc", "/proc", "proc", 0, ""))'], fs
    cgroup = {line: run["earned"] for line, run in runs["add-cgroups"].items()}
    assert len(cgroup) == 4 and set(cgroup.values()) == {0}, cgroup  # the empty answer, mkdir, the limit, the PID


def _submission(student: dict, path: Path, answers: dict[str, list[str]]) -> Path:
    """The student copy with each placeholder of a cell replaced by that cell's answers, in order."""
    nb = json.loads(json.dumps(student))
    for cell in nb["cells"]:
        source = multiline_text(cell["source"])
        for answer in answers.get(cell["id"], []):
            assert PLACEHOLDER in source, cell["id"]
            source = source.replace(PLACEHOLDER, answer, 1)
        assert cell["id"] not in answers or PLACEHOLDER not in source, cell["id"]
        cell["source"] = source
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def test_answers_that_only_look_right_earn_nothing_in_a_real_rerun(tmp_path):
    try:
        released = workshop("assign", str(NB09), "--out", str(tmp_path / "release"), "--no-verify")
        assert released.returncode == 0, released.stderr
        reference = json.loads((tmp_path / "release" / "reference" / NB09.name).read_text())
        student = json.loads((tmp_path / "release" / "student" / NB09.name).read_text())
        # the reference keeps its // markers, the student copy a // placeholder: both compile
        solutions = [c for c in reference["cells"] if c["id"] in ("nb09-task-fs", "nb09-task-cg")]
        assert all(solution_regions(multiline_text(c["source"]).split("\n"), CODE)[0] for c in solutions)
        subs = tmp_path / "subs"
        subs.mkdir()
        _submission(student, subs / "fake.ipynb", {"nb09-task-fs": FAKE_ROOTFS, "nb09-task-cg": FAKE_CGROUP})
        graded = workshop("grade", str(tmp_path / "release" / "reference" / NB09.name), str(subs),
                          "--rerun", *LOCAL, "--json", str(tmp_path / "g.json"), "--out", str(tmp_path / "out"))
    finally:
        leftovers_cleanup()
    assert graded.returncode in (0, 1), graded.stdout[-3000:] + graded.stderr[-3000:]
    report = json.loads((tmp_path / "g.json").read_text())
    [fake] = report["submissions"]
    tasks = {t["label"]: t["checks"] for t in report["tasks"]}
    for task in ("add-a-filesystem", "add-cgroups"):
        got = {key: fake["checks"][key] for key in tasks[task]}
        assert sum(c["points"] for c in got.values()) == 4, got
        assert sum(c["earned"] for c in got.values()) == 0, got
    messages = {key: fake["checks"][key]["message"] or "" for task in tasks.values() for key in task}
    said = " ".join(messages.values())
    # the containers ran, and the host saw where they really were
    assert "not the root filesystem" in said, messages
    assert "the fresh proc covers the host's /proc" in said, messages
    assert "not in the /gocontainer-" in said and "no OOM kill is counted" in said, messages
    assert "does not build" not in said, messages
