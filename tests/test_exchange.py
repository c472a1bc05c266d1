"""The course exchange with real local users (made with useradd, removed after): the instructor
(root) releases and starts the collector, each student fetches and submits as themselves
(runuser), the instructor collects and grades; then the attacks a student can try on another,
each refused in one sentence, and the other's submission untouched."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from assignment_lab import BOX_SOLUTION, COUNT_SOLUTION, VISIBLE_POINTS, fill, make_source
from harness import clean_env

from workshop.assign import release
from workshop.runner import run_notebook

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="makes users and a root-owned course")]

ROOT = Path(__file__).resolve().parent.parent
# The students run the package's code with this Python when other users may run it, else (an
# interpreter under /root, as pyenv's) with the system's Python and the venv's libraries.
LIBS = next(Path(sys.prefix, "lib").glob("python3*/site-packages"), None)


def _students_python() -> str:
    done = subprocess.run([shutil.which("runuser") or "runuser", "-u", "nobody", "--", sys.executable, "-c", "pass"],
                          capture_output=True, cwd="/")
    return sys.executable if done.returncode == 0 else "/usr/bin/python3"


SYSTEM_PYTHON = _students_python() if os.geteuid() == 0 else sys.executable
TAG = secrets.token_hex(2)
GROUP = f"wsc{TAG}"
ALICE, BOB, CAROL = (f"ws{n}{TAG}" for n in ("alice", "bob", "carol"))


def _run(argv: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd="/")


def instructor(*args: str, course: Path) -> subprocess.CompletedProcess:
    env = {**clean_env(), "WORKSHOP_COURSE_DIR": str(course), "COLUMNS": "200"}
    return _run([sys.executable, "-m", "workshop", *args], env)


def as_user(user: str, argv: list[str], course: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": f"/home/{user}", "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
           "PYTHONPATH": f"{ROOT}:{LIBS}", "WORKSHOP_COURSE_DIR": str(course), "COLUMNS": "200", **extra}
    return _run([shutil.which("runuser") or "runuser", "-u", user, "--", *argv], env)


def student(user: str, *args: str, course: Path, **extra: str) -> subprocess.CompletedProcess:
    return as_user(user, [SYSTEM_PYTHON, "-m", "workshop", *args], course, **extra)


def raw_request(user: str, course: Path, header: dict, body: bytes = b"") -> dict:
    """A student's own client: any JSON line and bytes on the socket, without the package's code."""
    code = ("import json, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "try:\n    s.sendall(sys.argv[2].encode() + b'\\n' + bytes.fromhex(sys.argv[3]))\n"
            "except OSError:\n    pass\n"
            "print(s.makefile('rb').readline().decode(), end='')\n")
    done = as_user(user, [SYSTEM_PYTHON, "-c", code, str(course / "collector.sock"), json.dumps(header), body.hex()],
                   course)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_sentence(done: subprocess.CompletedProcess) -> str:
    """The refusal: exit status 2 and one line on stderr, no traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def course(tmp_path_factory, installed_kernelspec):
    """A course with a group of three students, an assignment released, the collector running, and
    two notebooks run by the kernel (a good one and an empty one) for the students to hand in."""
    if LIBS is None or not Path(SYSTEM_PYTHON).exists() or shutil.which("runuser") is None:
        pytest.skip("needs /usr/bin/python3 and runuser")
    d = tmp_path_factory.mktemp("exchange")
    release([make_source(d / "lab.ipynb")], d / "out", verify_reference=False)
    work = {"good": fill(d / "out" / "student" / "lab.ipynb", d / "good.ipynb",
                         {"box": BOX_SOLUTION, "count": COUNT_SOLUTION}),
            "empty": fill(d / "out" / "student" / "lab.ipynb", d / "empty.ipynb", {})}
    for path in work.values():
        assert run_notebook(path, out_dir=d / "ran", allow_errors=True).error is None
    subprocess.run(["groupadd", GROUP], check=True)
    for user in (ALICE, BOB, CAROL):
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", "-G", GROUP, user],
                       check=True)
    root = Path(f"/var/tmp/ws-course-{TAG}")
    try:
        assert instructor("exchange", "init", "--group", GROUP, "--max-mb", "1", course=root).returncode == 0
        deadline = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(timespec="seconds")
        done = instructor("release", str(d / "out"), "--deadline", deadline, course=root)
        assert done.returncode == 0, done.stderr
        started = instructor("exchange", "start", course=root)
        assert started.returncode == 0, started.stderr
        yield {"root": root, "dir": d, "ran": d / "ran", "reference": d / "out" / "reference" / "lab.ipynb"}
    finally:
        instructor("exchange", "stop", course=root)
        for user in (ALICE, BOB, CAROL):
            subprocess.run(["pkill", "-KILL", "-u", user], check=False)
            subprocess.run(["userdel", "--remove", "--force", user], check=False, capture_output=True)
        subprocess.run(["groupdel", GROUP], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _work_on(course: dict, user: str, which: str) -> Path:
    """What the student saved after running their copy: the kernel's executed notebook, as theirs."""
    path = Path(f"/home/{user}/assignments/lab.ipynb")
    shutil.copyfile(course["ran"] / f"{which}.ipynb", path)
    shutil.chown(path, user, user)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_fetch_submit_collect_grade(course, tmp_path):
    root = course["root"]
    assert oct(root.stat().st_mode & 0o7777) == "0o755" and oct((root / "submissions").stat().st_mode & 0o777) == "0o700"
    for user in (ALICE, BOB):
        done = student(user, "fetch", course=root)
        assert done.returncode == 0 and "lab: fetched:" in done.stdout, done.stderr
        mine = Path(f"/home/{user}/assignments/lab.ipynb")
        assert mine.stat().st_uid != 0 and oct(mine.stat().st_mode & 0o777) == "0o600"
    again = student(ALICE, "fetch", "lab", course=root)
    assert "kept your copy" in again.stdout
    _work_on(course, ALICE, "empty")
    first = student(ALICE, "submit", f"/home/{ALICE}/assignments/lab.ipynb", course=root)
    assert first.returncode == 0, first.stderr
    assert "Visible checks:" in first.stdout and f"handed in lab as {ALICE}" in first.stdout
    assert "hand-in number 1" in first.stdout and "on time, the deadline is" in first.stdout
    _work_on(course, ALICE, "good")
    second = student(ALICE, "submit", f"/home/{ALICE}/assignments/lab.ipynb", course=root)
    assert "hand-in number 2" in second.stdout, second.stderr
    _work_on(course, BOB, "empty")
    assert student(BOB, "submit", f"/home/{BOB}/assignments/lab.ipynb", course=root).returncode == 0
    # the deadline moves into the past: the next hand-in is late, and kept beside the others
    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat(timespec="seconds")
    assert instructor("release", str(course["dir"] / "out"), "--deadline", past, course=root).returncode == 0
    _work_on(course, BOB, "good")
    late = student(BOB, "submit", f"/home/{BOB}/assignments/lab.ipynb", course=root)
    assert "hand-in number 2" in late.stdout, late.stderr
    assert re.search(r": LATE by [56] min, the deadline was ", late.stdout), late.stdout

    out = tmp_path / "collected"
    done = instructor("collect", "lab", "--out", str(out), course=root)
    assert done.returncode == 0, done.stderr
    assert f"collected 2 submissions of lab into {out} (1 late); roster: the members of the group {GROUP}" \
        in done.stdout
    assert f"{CAROL}: missing" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{ALICE}.ipynb", f"{BOB}.ipynb", "collected.csv",
                                                            "roster.csv"])
    rows = {line.split(",")[0]: line.split(",") for line in (out / "collected.csv").read_text().splitlines()}
    assert rows[ALICE][1:2] == ["collected"] and rows[ALICE][3] == "" and rows[ALICE][5] == "2"
    assert rows[BOB][3] == "yes" and rows[CAROL][1] == "missing"
    graded = instructor("grade", str(course["reference"]), str(out), "--json", str(tmp_path / "g.json"), "-q",
                        course=root)
    assert graded.returncode == 0, graded.stderr
    scores = {r["student"]: r["total"] for r in json.loads((tmp_path / "g.json").read_text())["submissions"]}
    assert scores == {ALICE: VISIBLE_POINTS, BOB: VISIBLE_POINTS}
    # on time only: Bob's late hand-in is left out, his first (empty) one graded
    on_time = instructor("collect", "lab", "--out", str(out), "--on-time", "--replace", course=root)
    assert on_time.returncode == 0, on_time.stderr
    assert _sha(out / f"{BOB}.ipynb") == _sha(course["ran"] / "empty.ipynb")
    assert instructor("exchange", "status", course=root).stdout.endswith("released: lab\n")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o1777)  # as /tmp is: a student could plant links in it
    line = one_sentence(instructor("collect", "lab", "--out", str(shared), course=root))
    assert line.endswith("must be a folder of yours that no one else can write to (another user could plant links "
                         "in it); collect into a new folder"), line


def _bobs_files(root: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted((root / "submissions" / "lab" / BOB).iterdir())}


def _handed_in(course: dict, user: str) -> None:
    """``user`` has handed lab in at least once (whichever test runs first)."""
    if not (course["root"] / "submissions" / "lab" / user).is_dir():
        assert student(user, "fetch", course=course["root"]).returncode == 0
        _work_on(course, user, "good")
        done = student(user, "submit", f"/home/{user}/assignments/lab.ipynb", course=course["root"])
        assert done.returncode == 0, done.stderr


def test_a_student_cannot_read_or_overwrite_another_submission(course):
    root = course["root"]
    _handed_in(course, BOB)
    before = _bobs_files(root)
    some = next(iter(before))
    store = root / "submissions" / "lab" / BOB
    for argv in (["ls", str(root / "submissions")], ["cat", str(store / some)],
                 ["sh", "-c", f"echo forged > {store / some}"], ["sh", "-c", f"echo new > {store / 'x.ipynb'}"]):
        done = as_user(ALICE, argv, root)
        assert done.returncode != 0 and "Permission denied" in done.stderr, (argv, done.stderr)
    answer = raw_request(ALICE, root, {"op": "history", "assignment": "lab", "student": BOB})
    assert answer == {"ok": False, "error": f"you are connected as {ALICE}, and the collector files everything "
                                            "under the user who sends it: a request cannot name another"}
    assert _bobs_files(root) == before


def test_a_student_cannot_submit_as_another(course):
    root = course["root"]
    student(ALICE, "fetch", course=root)
    nb = _work_on(course, ALICE, "good").read_bytes()
    answer = raw_request(ALICE, root, {"op": "submit", "assignment": "lab", "size": len(nb), "student": BOB}, nb)
    assert answer["ok"] is False and answer["error"].startswith(f"you are connected as {ALICE}")
    # who the environment says one is does not matter: the kernel tells the collector
    done = student(ALICE, "submit", f"/home/{ALICE}/assignments/lab.ipynb", course=root, USER=BOB, LOGNAME=BOB)
    assert f"handed in lab as {ALICE} " in done.stdout, done.stderr
    answer = raw_request(ALICE, root, {"op": "history", "assignment": "lab"})
    assert answer["ok"] and {r["student"] for r in answer["receipts"]} == {ALICE}


def test_a_student_cannot_choose_the_time(course):
    root = course["root"]
    student(ALICE, "fetch", course=root)
    path = _work_on(course, ALICE, "good")
    nb = path.read_bytes()
    answer = raw_request(ALICE, root, {"op": "submit", "assignment": "lab", "size": len(nb),
                                       "submitted_at": "2000-01-01T00:00:00+00:00"}, nb)
    assert answer == {"ok": False, "error": "the collector stamps each submission with its own clock: a request "
                                            "cannot set the time"}
    as_user(ALICE, ["touch", "-d", "2000-01-01", str(path)], root)  # an old file time means nothing
    before = datetime.now(timezone.utc)
    done = student(ALICE, "submit", str(path), course=root)
    assert done.returncode == 0, done.stderr
    receipt = raw_request(ALICE, root, {"op": "history", "assignment": "lab"})["receipts"][-1]
    assert datetime.fromisoformat(receipt["submitted_at"]) >= before - timedelta(seconds=1)


def test_a_planted_symbolic_link_hands_in_nothing_of_another(course):
    root = course["root"]
    _handed_in(course, BOB)
    student(ALICE, "fetch", course=root)
    mine = Path(f"/home/{ALICE}/assignments/lab.ipynb")
    stored = next((root / "submissions" / "lab" / BOB).glob("*.ipynb"), None)
    for other in (f"/home/{BOB}/assignments/lab.ipynb", str(stored)):
        mine.unlink()
        assert as_user(ALICE, ["ln", "-s", other, str(mine)], root).returncode == 0
        line = one_sentence(student(ALICE, "submit", str(mine), course=root))
        assert line.endswith("permission denied; you can only hand in a notebook you can read"), line
    mine.unlink()


def test_a_huge_notebook_is_refused_before_it_is_stored(course):
    root = course["root"]
    student(ALICE, "fetch", course=root)
    path = Path(f"/home/{ALICE}/assignments/huge.ipynb")
    nb = json.loads((course["ran"] / "good.ipynb").read_text())
    nb["cells"][0]["source"] = "x" * (2 * 2**20)
    path.write_text(json.dumps(nb))
    shutil.chown(path, ALICE, ALICE)
    count = len(list((root / "submissions" / "lab" / ALICE).glob("*.ipynb")))
    line = one_sentence(student(ALICE, "submit", str(path), "--assignment", "lab", course=root))
    assert "is 2.0 MiB, over the course's limit of 1.0 MiB: clear the outputs" in line, line
    # the collector checks too, before reading: a client of one's own gets the same answer
    answer = raw_request(ALICE, root, {"op": "submit", "assignment": "lab", "size": 50 * 2**20}, b"{}")
    assert answer["ok"] is False and "is 50.0 MiB, over the course's limit of 1.0 MiB" in answer["error"]
    assert len(list((root / "submissions" / "lab" / ALICE).glob("*.ipynb"))) == count


def test_only_the_course_group_hands_in(course):
    root = course["root"]
    outsider = f"wsout{TAG}"
    subprocess.run(["useradd", "--create-home", "--password", "*", outsider], check=True)
    try:
        nb = (course["ran"] / "good.ipynb").read_bytes()
        answer = raw_request(outsider, root, {"op": "submit", "assignment": "lab", "size": len(nb)}, nb)
        assert answer == {"ok": False, "error": f"{outsider} is not in the course group {GROUP}; ask your "
                                                "instructor to add you"}
    finally:
        subprocess.run(["userdel", "--remove", "--force", outsider], check=False, capture_output=True)
