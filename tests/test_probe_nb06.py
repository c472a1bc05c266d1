"""Notebook 6 (the container in Python): its tasks are checked on what the container left in the system.

- `workshop probe` finds no weak check in it (no shortcut passes a check worth points, no line of a
  solution goes unneeded), on this machine: the session's one probe of it, which
  tests/test_coverage_table.py reads too.
- The shortcuts that earned full marks before are graded by a real `workshop grade --rerun` and earn
  less than the task's points: a cgroup that is a plain directory with the expected text written by
  `os.write`, and a root filesystem that is never entered (no chroot, the marker printed when the
  command is `ls /`, proc mounted on the host's /proc path in the container's mount namespace).
  The reference's own answers, in the same batch, keep every point.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import clean_env
from test_notebooks import NOTEBOOKS, leftovers_cleanup

from workshop.records import multiline_text
from workshop.tasks import CODE, solution_regions

NB06 = next(p for p in NOTEBOOKS if p.stem == "06-container-in-python")
LOCAL = ("--target", "local", "--run-student-code-on-this-machine")

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="notebook 6 needs root: namespaces, mounts, cgroups"), pytest.mark.slow, pytest.mark.root]

# a cgroup that is no cgroup: a plain directory, and the text the old checks grepped, printed by join
FAKE_CGROUP = {
    "nb06-task-cg": [
        'path = f"/var/tmp/container-workshop/06-python/{name}"\n    os.mkdir(path)',
        'os.write(1, b"exit status: 137\\n0::/pycontainer-1\\n")',
    ],
}
# no chroot: the marker printed when the command is `ls /`, and proc mounted on the host's /proc path
FAKE_ROOTFS = {
    "nb06-task-fs": [
        'import sys\n    os.chdir("/")\n    mount("proc", "/proc", "proc")\n'
        '    if sys.argv[-1] == "ls /":\n        os.write(1, b"ROOTFS-OF-THE-CONTAINER\\n")',
    ],
}


def workshop(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean_env(), "COLUMNS": "250"})


def _solutions(reference: dict) -> dict[str, list[str]]:
    """The text of each solution region of every code task, in order, by cell id."""
    found = {}
    for cell in reference["cells"]:
        lines = multiline_text(cell["source"]).split("\n")
        regions, _ = solution_regions(lines, CODE)
        if cell["cell_type"] == "code" and regions:
            found[cell["id"]] = ["\n".join(lines[start + 1:end]).strip() for start, end in regions]
    return found


def _submission(student: dict, path: Path, answers: dict[str, list[str]]) -> Path:
    """The student copy with each `# YOUR CODE HERE` of a cell replaced by that cell's answers, in order."""
    nb = json.loads(json.dumps(student))
    for cell in nb["cells"]:
        source = multiline_text(cell["source"])
        for answer in answers.get(cell["id"], []):
            assert "# YOUR CODE HERE" in source, cell["id"]
            source = source.replace("# YOUR CODE HERE", answer, 1)
        assert cell["id"] not in answers or "# YOUR CODE HERE" not in source, cell["id"]
        cell["source"] = source
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


@pytest.mark.notebook_probe
def test_notebook_06_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("06")  # the session's one probe of notebook 06 (tests/conftest.py)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert report is not None and report["weak"] == []
    tasks = {t["task"]: t for t in report["tasks"]}
    assert set(tasks) == {"add-a-filesystem", "add-cgroups"}
    for task in tasks.values():
        assert task["problem"] is None and task["full_marks"] == []
        kinds = {s["kind"] for s in task["shortcuts"] if not s["error"]}
        assert {"empty", "lines"} <= kinds, task  # the shortcuts were really run
        removed = [s for s in task["shortcuts"] if s["kind"] == "lines"]
        assert removed and all(s["earned"] < s["points"] for s in removed), removed


def _grade_shortcuts(tmp_path: Path, target: tuple[str, ...]) -> tuple[dict, dict]:
    """The reference's answers and the two fakes, graded in one real rerun batch on ``target``:
    the results by student, and each task's check keys."""
    try:
        released = workshop("assign", str(NB06), "--out", str(tmp_path / "release"), "--no-verify")
        assert released.returncode == 0, released.stderr
        reference = json.loads((tmp_path / "release" / "reference" / NB06.name).read_text())
        student = json.loads((tmp_path / "release" / "student" / NB06.name).read_text())
        solutions = _solutions(reference)
        subs = tmp_path / "subs"
        subs.mkdir()
        _submission(student, subs / "honest.ipynb", solutions)
        _submission(student, subs / "fakecgroup.ipynb", {**solutions, **FAKE_CGROUP})
        _submission(student, subs / "fakerootfs.ipynb", {**solutions, **FAKE_ROOTFS})
        graded = workshop("grade", str(tmp_path / "release" / "reference" / NB06.name), str(subs),
                          "--rerun", *target, "--json", str(tmp_path / "g.json"), "--out", str(tmp_path / "out"),
                          timeout=2400)
    finally:
        if "qemu:" not in " ".join(target):  # on VMs nothing is left here (and other tests' runs may be here)
            leftovers_cleanup()
    assert graded.returncode in (0, 1), graded.stdout[-3000:] + graded.stderr[-3000:]
    report = json.loads((tmp_path / "g.json").read_text())
    results = {r["student"]: r for r in report["submissions"]}
    return results, {t["label"]: t["checks"] for t in report["tasks"]}


def _assert_only_the_real_work_earns(results: dict, tasks: dict) -> None:
    def earned(student: str, task: str) -> float:
        return sum(results[student]["checks"][key]["earned"] for key in tasks[task])

    def checks(student: str, task: str) -> dict:
        return {k: results[student]["checks"][k] for k in tasks[task]}

    assert set(tasks) >= {"add-a-filesystem", "add-cgroups"}
    for task in ("add-a-filesystem", "add-cgroups"):
        assert sum(results["honest"]["checks"][key]["points"] for key in tasks[task]) == 4
        assert earned("honest", task) == 4, checks("honest", task)
        assert not results["honest"]["flags"], results["honest"]["flags"]
    # the printed "exit status: 137" and the plain directory: every cgroup check fails
    assert earned("fakecgroup", "add-cgroups") == 0, checks("fakecgroup", "add-cgroups")
    assert earned("fakecgroup", "add-a-filesystem") == 4  # the other task is graded as usual
    # no chroot: the container's / is the host's, and the host's /proc path is covered in its namespace
    assert earned("fakerootfs", "add-a-filesystem") == 0, checks("fakerootfs", "add-a-filesystem")
    assert earned("fakerootfs", "add-cgroups") == 4


def test_shortcuts_that_leave_no_container_state_earn_less_than_the_task_in_a_real_rerun(tmp_path):
    results, tasks = _grade_shortcuts(tmp_path, LOCAL)
    _assert_only_the_real_work_earns(results, tasks)
    messages = " ".join(results["fakecgroup"]["checks"][k]["message"] or "" for k in tasks["add-cgroups"])
    assert "not in the /pycontainer-" in messages and "no OOM kill is counted" in messages
    messages = " ".join(results["fakerootfs"]["checks"][k]["message"] or "" for k in tasks["add-a-filesystem"])
    assert "not the root filesystem" in messages and "the host's /proc path" in messages


@pytest.mark.timeout(2700)
@pytest.mark.vm
def test_the_same_shortcuts_earn_nothing_on_a_fresh_vm_with_cgroup_v2(tmp_path):
    """The rerun VM runs the cgroup v2 branch of the checks (this machine has v1), from
    the snapshot whose sealed agent runs them, each submission on a VM of its own."""
    from test_vm import _require_tools

    from workshop.vm import build_image

    _require_tools()
    build_image()
    results, tasks = _grade_shortcuts(tmp_path, ("--target", "qemu:ws06probe", "--jobs", "2", "--timeout", "300"))
    _assert_only_the_real_work_earns(results, tasks)
    # the honest run's container was in a cgroup of the unified (v2) hierarchy, as the step's output says
    honest = [json.loads(p.read_text()) for p in (tmp_path / "out" / "executed").glob("*.ipynb")]
    printed = "".join("".join(o.get("text", "")) for nb in honest for c in nb["cells"] for o in c.get("outputs", []))
    assert re.search(r"in the cgroup /sys/fs/cgroup/pycontainer-\d+$", printed, re.M), printed[-2000:]
