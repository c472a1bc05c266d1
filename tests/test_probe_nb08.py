"""Notebook 8 (Docker, the engine itself): its tasks are checked on what the engine left, read from outside.

- `workshop probe` finds no weak check in it (the empty answer, `printf` of the recorded output and
  each line of a solution removed earn less than the task's points), on this machine with the
  engine up: the session's one probe of it, which tests/test_coverage_table.py reads too.
- The answers that only look right are graded by a real `workshop grade --rerun` and earn less
  than the honest answer in the same batch, which keeps every point: the expected text echoed,
  the work done by hand without the engine (directories standing for containers), containers
  made but never run, `--rm`, another container committed, the base image tagged as the commit,
  a flattened export imported as the "commit" (c1's token, but no layer over the base: 2 of 3);
  the socket opened to everyone instead of the group
  (graded on its own, and the socket put back).
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

NB08 = next(p for p in NOTEBOOKS if p.stem == "08-docker-engine")
LOCAL = ("--target", "local", "--run-student-code-on-this-machine")
PLACEHOLDER = "# YOUR CODE HERE"
SOCKET = "/var/run/docker.sock"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="notebook 8 runs the Docker engine: root"),
    pytest.mark.skipif(shutil.which("dockerd") is None and not os.path.exists("/usr/sbin/dockerd"),
                       reason="notebook 8 needs Docker: bash scripts/setup --docker"),
    pytest.mark.slow,
    pytest.mark.root,
]

HONEST = {
    "nb08-task-run": "for n in 1 2 3; do docker run --network none --name ws08-c$n ws08-busybox sh -c "
                     "\"echo 'container c$n was here' > /note; echo \\$RANDOM\\$RANDOM > /token\"; done",
    "nb08-task-commit": "docker commit ws08-c1 ws08-committed",
    "nb08-task-group": "usermod -aG docker ws08student",
}
# each a submission of its own: (what it answers in each task cell)
SHORTCUTS = {
    "echoed": {
        "nb08-task-run": "printf '%s\\n' 'ws08-c1 Exited (0)' 'ws08-c2 Exited (0)' 'ws08-c3 Exited (0)'",
        "nb08-task-commit": "echo sha256:1df2a0ea25d3db730f97617d6382e81bb5d42d628ab834837ef9bd48228f9444",
        "nb08-task-group": "echo 'uid=1001(ws08student) gid=1002(ws08student) groups=1002(ws08student),106(docker)'",
    },
    "by-hand": {  # no engine: directories with the notes stand for containers, /etc/group read by nobody
        "nb08-task-run": "for n in 1 2 3; do mkdir -p ws08-c$n/upper && echo \"container c$n was here\" > ws08-c$n/upper/note "
                         "&& echo $RANDOM > ws08-c$n/upper/token; done",
        "nb08-task-commit": "mkdir -p ws08-committed && cp -a ws08-c1/upper/. ws08-committed/",
        "nb08-task-group": "printf 'ws08student docker\\n' > groups.txt",
    },
    "never-ran": {  # the engine makes the containers but runs none; the base image tagged as the commit
        "nb08-task-run": "for n in 1 2 3; do docker create --network none --name ws08-c$n ws08-busybox sh -c "
                         "\"echo 'container c$n was here' > /note; echo \\$RANDOM > /token\"; done",
        "nb08-task-commit": "docker tag ws08-busybox ws08-committed",
        "nb08-task-group": "",
    },
    "removed": {  # --rm: the containers ran and are gone
        "nb08-task-run": "for n in 1 2 3; do docker run --rm --network none --name ws08-c$n ws08-busybox sh -c "
                         "\"echo 'container c$n was here' > /note; echo \\$RANDOM > /token\"; done",
        "nb08-task-commit": "docker commit ws08-c1 ws08-committed",
        "nb08-task-group": "",
    },
    "flattened": {  # c1's whole filesystem exported and imported: its token, but no layer over the base
        "nb08-task-run": HONEST["nb08-task-run"],
        "nb08-task-commit": "docker export ws08-c1 | docker import - ws08-committed",
        "nb08-task-group": "",
    },
    "other-container": {  # the right containers; c2 committed instead of c1
        "nb08-task-run": HONEST["nb08-task-run"],
        "nb08-task-commit": "docker commit ws08-c2 ws08-committed",
        "nb08-task-group": "",
    },
}


def nb08_leftovers() -> None:
    """What a killed run left: the ws08- containers and images, the user, the socket's mode."""
    def docker(*args: str) -> str:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout
    for name in docker("ps", "-aq", "--filter", "name=^ws08-").split():
        docker("rm", "-f", name)
    for image in docker("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=ws08-*").split():
        docker("rmi", "-f", image)
    docker("image", "prune", "-f", "--filter", "label=workshop.notebook=08")
    uid = subprocess.run(["id", "-u", "ws08student"], capture_output=True, text=True, check=False).stdout.strip()
    if uid:
        if uid != "0":
            subprocess.run(["pkill", "-KILL", "-U", uid], check=False)
        subprocess.run(["userdel", "-rf", "ws08student"], capture_output=True, check=False)
    if os.path.exists(SOCKET):
        shutil.chown(os.path.realpath(SOCKET), "root", "docker")
        os.chmod(os.path.realpath(SOCKET), 0o660)
    leftovers_cleanup()


def workshop(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean_env(), "COLUMNS": "250"})


@pytest.mark.notebook_probe
def test_notebook_08_has_no_weak_check(docker_engine, notebook_probe):
    try:
        run, report = notebook_probe("08")  # the session's one probe of notebook 08 (tests/conftest.py)
    finally:
        nb08_leftovers()
    assert report is not None, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert report["weak"] == []
    tasks = {t["task"]: t for t in report["tasks"]}
    assert set(tasks) == {"graveyard", "commit", "docker-group"}
    for task in tasks.values():
        assert task["problem"] is None and task["full_marks"] == [], task
        assert all(s["error"] is None for s in task["shortcuts"]), task["shortcuts"]
        kinds = {s["kind"] for s in task["shortcuts"]}
        assert {"empty", "printf"} <= kinds, kinds
        assert all(s["earned"] == 0 for s in task["shortcuts"]), task["shortcuts"]


def _submissions(student: dict, folder: Path, answers: dict[str, dict[str, str]]) -> Path:
    folder.mkdir()
    for name, cells in answers.items():
        nb = json.loads(json.dumps(student))
        for cell in nb["cells"]:
            if cell["id"] in cells:
                source = multiline_text(cell["source"])
                assert source.count(PLACEHOLDER) == 1, cell["id"]
                cell["source"] = source.replace(PLACEHOLDER, cells[cell["id"]] or ":")
        (folder / f"{name}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    return folder


def _grade(reference: Path, subs: Path, out: Path) -> tuple[dict, dict]:
    try:
        done = workshop("grade", str(reference), str(subs), "--rerun", *LOCAL, "--json", str(out))
    finally:
        nb08_leftovers()
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    tasks = {t["label"]: t["checks"] for t in report["tasks"]}
    return {s["student"]: s for s in report["submissions"]}, tasks


def _earned(result: dict, keys: list[str]) -> float:
    return sum(result["checks"][k]["earned"] for k in keys)


def _said(result: dict, keys: list[str]) -> str:
    return " ".join(result["checks"][k]["message"] or "" for k in keys)


def test_answers_that_only_look_right_earn_less_in_a_real_rerun(docker_engine, tmp_path):
    try:
        released = workshop("assign", str(NB08), "--out", str(tmp_path / "release"), "--no-verify")
    finally:
        nb08_leftovers()
    assert released.returncode == 0, released.stderr
    reference = tmp_path / "release" / "reference" / NB08.name
    student = json.loads((tmp_path / "release" / "student" / NB08.name).read_text())

    results, tasks = _grade(reference, _submissions(student, tmp_path / "subs", {"honest": HONEST, **SHORTCUTS}),
                            tmp_path / "g.json")
    full = {task: sum(results["honest"]["checks"][k]["points"] for k in keys) for task, keys in tasks.items()}
    assert full == {"graveyard": 3, "commit": 3, "docker-group": 4}, full
    assert {task: _earned(results["honest"], keys) for task, keys in tasks.items()} == full, results["honest"]["checks"]
    earned = {name: {task: _earned(results[name], keys) for task, keys in tasks.items()} for name in SHORTCUTS}
    assert earned == {
        "echoed": {"graveyard": 0, "commit": 0, "docker-group": 0},
        "by-hand": {"graveyard": 0, "commit": 0, "docker-group": 0},
        "never-ran": {"graveyard": 0, "commit": 0, "docker-group": 0},
        "removed": {"graveyard": 0, "commit": 0, "docker-group": 0},
        "flattened": {"graveyard": 3, "commit": 2, "docker-group": 0},
        # c2's layer over the right base: the layer count holds, c1's token does not
        "other-container": {"graveyard": 3, "commit": 1, "docker-group": 0},
    }, {name: results[name]["checks"] for name in SHORTCUTS}
    # the messages say what the engine and the disk showed
    assert "docker inspect says: created" in _said(results["never-ran"], tasks["graveyard"])
    assert "no such container" in _said(results["echoed"], tasks["graveyard"])
    assert "ws08-c1 wrote" in _said(results["other-container"], tasks["commit"])
    assert "not ws08-busybox's layer plus one" in _said(results["flattened"], tasks["commit"])
    assert "does not list the group docker" in _said(results["by-hand"], tasks["docker-group"])


def test_a_socket_opened_to_everyone_is_not_membership_of_the_group(docker_engine, tmp_path):
    released = workshop("assign", str(NB08), "--out", str(tmp_path / "release"), "--no-verify")
    assert released.returncode == 0, released.stderr
    reference = tmp_path / "release" / "reference" / NB08.name
    student = json.loads((tmp_path / "release" / "student" / NB08.name).read_text())
    chmod = {**HONEST, "nb08-task-group": f"chmod 666 {SOCKET}"}
    try:
        results, tasks = _grade(reference, _submissions(student, tmp_path / "subs", {"chmod": chmod}),
                                tmp_path / "g.json")
    finally:
        nb08_leftovers()  # the socket root:docker, 660 again
    assert os.stat(os.path.realpath(SOCKET)).st_mode & 0o777 == 0o660
    chmodded = results["chmod"]
    assert _earned(chmodded, tasks["docker-group"]) == 0, chmodded["checks"]
    said = _said(chmodded, tasks["docker-group"])
    assert "mode 666" in said and "does not list the group docker" in said, said


def test_without_an_engine_the_cells_say_so_in_one_sentence(start_kernel):
    """No engine at DOCKER_HOST and no `workshop` to start one: the first cell fails with what is
    missing and how to start it, and a later cell's `docker` says the same instead of erring."""
    cells = {c["id"]: multiline_text(c["source"]) for c in json.loads(NB08.read_text())["cells"]}
    path = ":".join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(":")
                    if p and not os.path.exists(os.path.join(p, "workshop")))
    kernel = start_kernel("local", DOCKER_HOST="unix:///nonexistent/docker.sock", PATH=path)
    first = kernel.run(cells["nb08-workdir"], timeout=120)
    said = "the Docker engine does not answer on this machine: as root, workshop docker up starts it"
    assert first.status != "ok" and said in first.stderr, (first.stdout, first.stderr)
    later = kernel.run('cd "$(mktemp -d)" && ' + cells["nb08-task-commit"].split("%%check")[0], timeout=60)
    assert f"docker did not run: {said}" in later.stderr, (later.stdout, later.stderr)
    assert "Cannot connect" not in later.stderr and "command not found" not in later.stderr, later.stderr
