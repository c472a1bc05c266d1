"""Reruns from the attacker's side: a submission cannot choose where it runs,
reach the other submissions, run forever, or leave anything running after its
rerun, not even when the grader itself is killed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from harness import clean_env
from test_grading import make_notebook

from workshop.batch import grade
from workshop.errors import GradingError

pytestmark = pytest.mark.slow

LOCAL = ["--target", "local", "--run-student-code-on-this-machine"]


def workshop_grade(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", "grade", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env or clean_env(COLUMNS="200"))


def results_of(path: Path) -> dict[str, dict]:
    return {r["student"]: r for r in json.loads(path.read_text())["submissions"]}


def kinds(result: dict) -> set[str]:
    return {f["kind"] for f in result["flags"]}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


HELLO = {"hello": "%expect stdout /^hello/\necho hello"}


@pytest.fixture
def lab(tmp_path):
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    subs = tmp_path / "subs"
    subs.mkdir()
    return ref, subs


# ---- where reruns run ------------------------------------------------------------------
def test_a_rerun_needs_a_target_and_recommends_a_fresh_vm(lab):
    ref, subs = lab
    sub = make_notebook(subs / "alice.ipynb", HELLO)
    done = workshop_grade(ref, sub, "--rerun")
    assert done.returncode == 2
    assert "--target" in done.stderr and "qemu:" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(GradingError, match="qemu:"):
        grade(ref, [sub], rerun=True)


def test_running_student_code_on_this_machine_must_be_asked_for_by_name(lab):
    ref, subs = lab
    sub = make_notebook(subs / "alice.ipynb", HELLO)
    done = workshop_grade(ref, sub, "--rerun", "--target", "local")
    assert done.returncode == 2
    message = done.stderr.strip()
    assert message.count("\n") == 0, message  # one clear sentence
    assert "--run-student-code-on-this-machine" in message and "qemu:" in message
    with pytest.raises(GradingError, match="--run-student-code-on-this-machine"):
        grade(ref, [sub], rerun=True, target="local")
    assert "--run-student-code-on-this-machine" in workshop_grade("--help", "x").stdout


def test_timeouts_have_defaults():
    help_text = " ".join(workshop_grade("--help").stdout.split())
    assert "--timeout FLOAT" in help_text and "(default 60;" in help_text
    assert "--submission-timeout FLOAT" in help_text and "(default 600;" in help_text
    from workshop.batch import DEFAULT_CELL_TIMEOUT, DEFAULT_SUBMISSION_TIMEOUT

    assert (DEFAULT_CELL_TIMEOUT, DEFAULT_SUBMISSION_TIMEOUT) == (60, 600)


OVER_SSH = """\
echo hi
%%check --name over-ssh
p=$$
while [ "$p" -gt 1 ]; do
  case "$(cat /proc/$p/comm)" in sshd*) exit 0;; esac
  p=$(awk '{print $4}' /proc/$p/stat)
done
echo 'FAIL: this cell ran on the grader, not over SSH'"""


def test_a_submission_cannot_move_its_rerun(tmp_path, sshd, installed_kernelspec):
    ref = make_notebook(tmp_path / "reference.ipynb", {"where": OVER_SSH})
    subs = tmp_path / "subs"
    subs.mkdir()
    honest = make_notebook(subs / "honest.ipynb", {"where": OVER_SSH})
    escape = make_notebook(subs / "escape.ipynb", {"escape": "%target local", "where": OVER_SSH,
                                                    "show": "%target"})
    nb = nbformat.read(str(escape), as_version=4)
    nb.metadata["workshop"] = {"target": "local"}
    nbformat.write(nb, str(escape))
    done = workshop_grade(ref, honest, escape, "--rerun", "--target", sshd.url, "--timeout", "60",
                          "--json", tmp_path / "g.json")
    assert done.returncode == 0, done.stderr
    results = results_of(tmp_path / "g.json")
    for name in ("honest", "escape"):  # both ran over SSH: the check that says so passed
        assert results[name]["checks"]["cell 1:over-ssh"]["passed"], results[name]
    assert kinds(results["honest"]) == set()
    refused = [f for f in results["escape"]["flags"] if f["kind"] == "target-change-refused"]
    assert len(refused) == 2, results["escape"]["flags"]  # the metadata and the %target line; not "%target" alone
    assert all("the target is fixed for this run" in f["message"] for f in refused)
    assert any("%target local" in f["message"] for f in refused)
    assert any("metadata.workshop.target" in f["message"] for f in refused)
    assert "target-change-refused" in done.stdout


# ---- what a rerun can reach -----------------------------------------------------------
VANDAL = """\
for f in ../*.ipynb "$OLDPWD"/*.ipynb "$OLDPWD"/../*.ipynb ./*.ipynb; do [ -f "$f" ] && echo pwned > "$f"; done
echo pwned > ../bob.ipynb; echo pwned > "$OLDPWD/bob.ipynb"
cd - >/dev/null 2>&1 && echo pwned > bob.ipynb
echo hello"""
FRESH = {"fresh": '%%check --name fresh-dir\n[ -z "$(ls -A)" ] || echo "FAIL: the directory holds $(ls -A | head -3)"',
         **HELLO}


def test_a_rerun_runs_in_a_fresh_directory_and_cannot_touch_other_submissions(tmp_path, installed_kernelspec):
    make_notebook(tmp_path / "reference.ipynb", FRESH)
    subs = tmp_path / "subs"
    subs.mkdir()
    make_notebook(subs / "bob.ipynb", FRESH)
    make_notebook(subs / "alice.ipynb", FRESH | {"hello": VANDAL})
    (subs / "carol.ipynb").write_bytes((subs / "bob.ipynb").read_bytes())
    before = {p.name: digest(p) for p in subs.iterdir()}
    env = clean_env(COLUMNS="200", OLDPWD=str(subs), PWD=str(subs))
    done = workshop_grade("../reference.ipynb", "alice.ipynb", "bob.ipynb", "carol.ipynb", "--rerun", *LOCAL,
                          "--json", tmp_path / "g.json", cwd=subs, env=env)
    assert done.returncode == 0, done.stderr
    assert {p.name: digest(p) for p in subs.iterdir()} == before
    results = results_of(tmp_path / "g.json")
    assert set(results) == {"alice", "bob", "carol"}
    for name in results:
        assert results[name]["total"] == results[name]["max"], results[name]
        assert "unreadable" not in kinds(results[name])


# ---- how long a rerun may take -----------------------------------------------------------
def test_hanging_submissions_are_stopped_and_the_others_graded(tmp_path, installed_kernelspec):
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    subs = tmp_path / "subs"
    subs.mkdir()
    make_notebook(subs / "bob.ipynb", HELLO)
    make_notebook(subs / "sleeper.ipynb", {"nap": "sleep 86400", **HELLO})
    make_notebook(subs / "slow.ipynb", {f"s{i}": "sleep 2" for i in range(20)} | HELLO)
    started = time.monotonic()
    done = workshop_grade(ref, subs, "--rerun", *LOCAL, "--timeout", "3", "--submission-timeout", "8",
                          "--jobs", "3", "--json", tmp_path / "g.json")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 60, took
    results = results_of(tmp_path / "g.json")
    assert results["bob"]["total"] == results["bob"]["max"] and kinds(results["bob"]) == set()
    sleeper = [f for f in results["sleeper"]["flags"] if f["kind"] == "timed-out"]
    assert sleeper and "3 s" in sleeper[0]["message"], results["sleeper"]["flags"]
    assert sleeper[0]["cell"] == "cell 1 (id nap)", "named as every report names a cell"
    assert results["sleeper"]["total"] == results["sleeper"]["max"]  # the cell after the stopped one still ran
    slow = [f for f in results["slow"]["flags"] if f["kind"] == "timed-out"]
    assert slow and "8 s" in slow[0]["message"] and "--submission-timeout" in slow[0]["message"]
    assert results["slow"]["total"] == 0


# ---- what a rerun leaves behind -------------------------------------------------------------
def spawner(token: int) -> str:
    """A cell that starts processes meant to outlive it, each sleeping a unique number of seconds."""
    return (f"setsid sleep {token}1 &\n"
            f"nohup sleep {token}2 >/dev/null 2>&1 &\n"
            f"( ( sleep {token}3 & ) & )\n"
            f"setsid -f sh -c 'exec sleep {token}4' </dev/null >/dev/null 2>&1\n"
            "echo started")


def nester(token: int) -> str:
    """A cell that makes a cgroup inside its own and starts a process in it."""
    return ("mnt=$(findmnt -t cgroup2 -n -o TARGET | head -n 1)\n"
            'own="$mnt$(sed -n \'s/^0:://p\' /proc/self/cgroup)"\n'
            'mkdir "$own/nested"\n'
            f"sh -c 'echo $$ > \"$1/cgroup.procs\" && exec sleep {token}5' sh \"$own/nested\" &\n"
            "sleep 0.5; grep -q '/nested$' /proc/$!/cgroup && echo nested-ok")


def survivors(token: int) -> list[int]:
    """Live processes running ``sleep TOKENn``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv[:1] == [b"sleep"] and len(argv) > 1 and argv[1].startswith(str(token).encode()) and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cgroup_dirs_of(pid: int) -> list[Path]:
    from workshop.kernel_cgroup import KernelCgroup

    parent = KernelCgroup.parent()
    return [p for p in parent.iterdir() if p.name.startswith(f"{pid}-")] if parent and parent.exists() else []


def test_nothing_a_submission_started_outlives_its_rerun(tmp_path, installed_kernelspec):
    token = random.randrange(100_000, 999_999)
    ref = make_notebook(tmp_path / "reference.ipynb", {"nest": "%expect stdout /nested-ok/\ntrue", **HELLO})
    sub = make_notebook(tmp_path / "daemon.ipynb", {"spawn": spawner(token), "nest": nester(token), **HELLO})
    proc = subprocess.Popen([sys.executable, "-m", "workshop", "grade", str(ref), str(sub), "--rerun", *LOCAL,
                             "--json", str(tmp_path / "g.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env())
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert survivors(token) == []
    assert cgroup_dirs_of(proc.pid) == []
    assert results_of(tmp_path / "g.json")["daemon"]["total"] == 2  # the nested cgroup did hold a process


def test_a_killed_grader_leaves_nothing_past_the_next_grade(tmp_path, installed_kernelspec):
    token = random.randrange(100_000, 999_999)
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    sub = make_notebook(tmp_path / "daemon.ipynb", {"spawn": spawner(token), "wait": "sleep 600", **HELLO})
    honest = make_notebook(tmp_path / "honest.ipynb", HELLO)
    first = subprocess.Popen([sys.executable, "-m", "workshop", "grade", str(ref), str(sub), "--rerun", *LOCAL],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    try:
        wait_for(lambda: len(survivors(token)) == 4, 120, "the submission's processes")
    finally:
        first.send_signal(signal.SIGKILL)  # half-way: the rerun's kernel is in its `sleep 600`
        first.wait()
    # the rerun's shell had a warden: its kernel's death ended what the submission started at once
    wait_for(lambda: survivors(token) == [], 30, "the warden to end the submission's processes")
    assert cgroup_dirs_of(first.pid)  # the killed grader's cgroup: the next grade removes it
    done = workshop_grade(ref, honest, "--rerun", *LOCAL, "--json", tmp_path / "g.json")
    assert done.returncode == 0, done.stderr
    assert survivors(token) == []
    assert cgroup_dirs_of(first.pid) == []
    assert results_of(tmp_path / "g.json")["honest"]["total"] == 1


def test_grading_api_reruns_clean_up_in_process(tmp_path, installed_kernelspec):
    token = random.randrange(100_000, 999_999)
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    sub = make_notebook(tmp_path / "daemon.ipynb", {"spawn": spawner(token), **HELLO})
    report = grade(ref, [sub], rerun=True, target="local", run_student_code_on_this_machine=True, timeout=30)
    assert report.results[0]["total"] == 1
    assert survivors(token) == []
    assert cgroup_dirs_of(os.getpid()) == []
