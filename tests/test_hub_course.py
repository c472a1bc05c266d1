"""The whole course loop on one server, for real: a JupyterHub on loopback whose
students' kernels run their cells on VMs of their own (`workshop hub vm`), three
local users logged in through the hub (one with their password, two with tokens of
the hub's API), each running cells on their own VM over their kernel's websocket,
proxied by the hub; another student shut out of the first one's VM; then the
instructor releases an assignment, each student's server fetches it as it starts (the
hub names the course: `workshop hub install --exchange`), the student runs it in their
kernel and hands it in with `%submit` from a cell, one of them again after the deadline;
the instructor collects (the roster: the hub's users) and grades."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from assignment_lab import BOX_SOLUTION, COUNT_SOLUTION, VISIBLE_POINTS, fill, make_source
from harness import RECORD_MIME, KernelSocket

pytest.importorskip("jupyterhub", reason="jupyterhub is missing: bash scripts/setup --hub installs it")

from hub_lab import (  # noqa: E402
    Hub,
    assert_shut_out,
    build_hub_vm,
    hub_vm_cache,
    kernel_uid,
    running_hub,
    stdout_of,
    students_of,
    vm_state,
    workshop,
)

from workshop.assign import release  # noqa: E402
from workshop.hub.config import VM_NAME  # noqa: E402
from workshop.hub.server import others_can_run  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.vm, pytest.mark.timeout(1500),
              pytest.mark.skipif(os.geteuid() != 0, reason="the hub runs as root: it starts servers as other users"),
              pytest.mark.skipif(os.geteuid() == 0 and not others_can_run(sys.executable),
                                 reason=f"students cannot run {sys.executable}: "
                                        "bash scripts/setup --test --python /usr/bin/python3"),
              pytest.mark.skipif(shutil.which("npm") is None, reason="npm is missing: bash scripts/setup --hub"),
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                 reason="qemu is missing: bash scripts/setup --vm")]

PASSWORD = "Course-" + secrets.token_hex(8)
GOOD = {"box": BOX_SOLUTION, "count": COUNT_SOLUTION}


@pytest.fixture(scope="module")
def course():
    """The exchange's course directory (students hand in to its collector), an assignment made
    for it (its cells run on the kernel's target: the student's VM), and the hub that serves it."""
    root = Path(tempfile.mkdtemp(prefix="workshop-hubcourse-", dir="/var/tmp"))
    os.chmod(root, 0o755)  # students read the released assignments in it
    exchange = root / "course"
    made = root / "assignment"
    source = make_source(root / "lab.ipynb")
    nb = json.loads(source.read_text())
    nb["metadata"]["workshop"].pop("target")  # the kernel's own: qemu:course
    source.write_text(json.dumps(nb))
    release([source], made, verify_reference=False)
    cache = hub_vm_cache()

    def vm_backed(hub_dir: Path) -> None:
        settings = json.loads((hub_dir / "hub.json").read_text())
        settings["vm"] = {"cache": str(cache), "memory_mb": 512, "per_student": 1, "at_once": 0}
        (hub_dir / "hub.json").write_text(json.dumps(settings))
        build_hub_vm(hub_dir)

    try:
        with running_hub("workshop-hubcourse-", "--exchange", str(exchange), before_up=vm_backed) as hub:
            init = workshop("exchange", "init", "--course", str(exchange), "--group", hub.group, "--hub-url", hub.url)
            assert init.returncode == 0, init.stderr
            workshop("exchange", "start", "--course", str(exchange))
            yield {"hub": hub, "exchange": exchange, "assignment": made}
    finally:
        workshop("exchange", "stop", "--course", str(exchange), check=False)
        shutil.rmtree(root, ignore_errors=True)


def _release(course: dict, deadline: datetime) -> None:
    done = workshop("release", str(course["assignment"]), "--course", str(course["exchange"]),
                    "--deadline", deadline.isoformat(timespec="seconds"))
    assert "released lab to" in done.stdout, done.stderr


def _outputs(messages: list[dict]) -> list[dict]:
    """A cell's IOPub messages as the outputs JupyterLab saves."""
    outputs: list[dict] = []
    for message in messages:
        kind, content = message["header"]["msg_type"], message["content"]
        if kind == "stream":
            outputs.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
        elif kind in ("display_data", "execute_result"):
            output = {"output_type": kind, "data": content["data"], "metadata": content.get("metadata", {})}
            outputs.append(output | ({"execution_count": content["execution_count"]} if kind == "execute_result" else {}))
        elif kind == "error":
            outputs.append({"output_type": "error", **{k: content[k] for k in ("ename", "evalue", "traceback")}})
        elif kind == "clear_output":
            outputs.clear()
    return outputs


class Student:
    """A student at work in JupyterLab: their server's API and their kernel's websocket, through the hub."""

    def __init__(self, hub: Hub, name: str, token: str):
        self.hub, self.name, self.token = hub, name, token
        self.home = Path(pwd.getpwnam(name).pw_dir)

    def api(self, method: str, path: str, body: dict | None = None):
        reply = self.hub.call(self.token, method, f"/user/{self.name}/api/{path}", body)
        return reply.json() if reply.text else {}

    def open(self, path: str) -> None:
        """Open a notebook: a session, whose kernel the server starts for that file."""
        session = self.api("POST", "sessions", {"path": path, "name": Path(path).name, "type": "notebook",
                                                "kernel": {"name": "workshop"}})
        self.path, self.kernel = path, session["kernel"]["id"]
        self.socket = KernelSocket(f"ws://127.0.0.1:{self.hub.port}/user/{self.name}/api/kernels/{self.kernel}"
                                   "/channels", self.token, in_header=True)

    def cell(self, cell_id: str, code: str, timeout: float = 300) -> tuple[list[dict], dict]:
        return self.socket.execute(cell_id, code, timeout=timeout)

    def work_on(self, answers: dict[str, str]) -> None:
        """Fill in the answers, save, run every code cell in order, save with the outputs."""
        nb = self.api("GET", f"contents/{self.path}?content=1")["content"]
        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / "in.ipynb").write_text(json.dumps(nb))
            nb = json.loads(fill(Path(scratch) / "in.ipynb", Path(scratch) / "out.ipynb", answers).read_text())
        self.save(nb)
        for count, cell in enumerate((c for c in nb["cells"] if c["cell_type"] == "code"), 1):
            messages, reply = self.cell(cell["id"], "".join(cell["source"]))
            cell["outputs"], cell["execution_count"] = _outputs(messages), count
        self.save(nb)

    def save(self, nb: dict) -> None:
        self.api("PUT", f"contents/{self.path}", {"type": "notebook", "format": "json", "content": nb})

    def submit(self) -> str:
        messages, reply = self.cell("hand-in", "%submit")
        shown = stdout_of(messages)
        assert reply["content"]["status"] == "ok", (shown, messages)
        return shown


def test_students_work_on_their_own_vms_through_the_hub_and_hand_in_for_grading(course, tmp_path):
    hub = course["hub"]
    _release(course, datetime.now(timezone.utc) + timedelta(hours=1))
    with students_of(hub, 3, PASSWORD) as names:
        tokens = {names[0]: hub.login_with_password(names[0], PASSWORD)}
        tokens |= {name: hub.token_for(name) for name in names[1:]}
        hub.start_servers(tokens)
        students = {name: Student(hub, name, token) for name, token in tokens.items()}
        work = {names[0]: GOOD, names[1]: GOOD, names[2]: {}}  # the last hands in the copy as fetched

        def first_cell_then_the_assignment(student: Student) -> dict:
            fetched = student.home / "assignments" / "lab.ipynb"  # as their server started
            assert fetched.stat().st_uid == pwd.getpwnam(student.name).pw_uid and fetched.stat().st_mode & 0o077 == 0
            student.open("assignments/lab.ipynb")
            messages, reply = student.cell("where", "id -u; cat /proc/sys/kernel/random/boot_id")
            assert reply["content"]["status"] == "ok", messages
            records = [m["content"]["data"][RECORD_MIME] for m in messages
                       if RECORD_MIME in m["content"].get("data", {})]
            student.work_on(work[student.name])
            return {"out": stdout_of(messages).split(), "record": records[-1], "handed": student.submit()}

        with ThreadPoolExecutor(len(students)) as pool:
            done = dict(zip(names, pool.map(first_cell_then_the_assignment, students.values()), strict=True))

        # each student's kernel runs as them, its cells as root on a VM of their own, whose qemu is theirs
        states = {name: vm_state(name, VM_NAME) for name in names}
        for name in names:
            uid = pwd.getpwnam(name).pw_uid
            assert kernel_uid(students[name].kernel) == uid
            assert done[name]["out"][0] == "0", done[name]
            assert "qemu" in json.dumps(done[name]["record"]["target"]), done[name]["record"]
            assert os.stat(f"/proc/{states[name]['pid']}").st_uid == uid, "qemu runs as the student"
        assert len({done[name]["out"][1] for name in names}) == 3, "three VMs, three boots"
        assert len({states[name]["port"] for name in names}) == 3

        # another student can read neither the first one's VM key, known hosts nor records, nor enter their VM,
        # and from their own VM reaches neither it nor the hub
        assert_shut_out(names[1], names[0], states[names[0]])
        messages, _ = students[names[1]].cell("reach", "; ".join(
            f"timeout 5 bash -c 'echo > /dev/tcp/10.0.2.2/{port}' 2>/dev/null && echo REACHED {port} || echo blocked"
            for port in (states[names[0]]["port"], hub.port)))
        assert stdout_of(messages).split() == ["blocked"] * 2, messages

        for name in names:
            handed = done[name]["handed"]
            assert "self-check: " in handed and f"handed in lab as {name} " in handed, handed
            assert "(hand-in number 1;" in handed and ": on time, the deadline is" in handed, handed
        assert f"self-check: {VISIBLE_POINTS} of {VISIBLE_POINTS} points" in done[names[0]]["handed"]
        assert "not passing yet" in done[names[2]]["handed"]

        # the deadline passes; the second student hands in again: kept, and late
        _release(course, datetime.now(timezone.utc) - timedelta(minutes=5))
        again = students[names[1]].submit()
        assert "(hand-in number 2;" in again and ": LATE by " in again, again
        for student in students.values():
            student.socket.close()

        out = tmp_path / "collected"
        env = dict(os.environ, JUPYTERHUB_API_TOKEN=hub.service_token)
        collected = workshop("collect", "lab", "--out", str(out), "--course", str(course["exchange"]), env=env)
        assert f"collected 3 submissions of lab into {out} (1 late); roster: the users of the hub at {hub.url}" \
            in collected.stdout, collected.stdout + collected.stderr
        rows = {line.split(",")[0]: line.split(",") for line in (out / "collected.csv").read_text().splitlines()}
        assert rows[names[1]][3] == "yes" and rows[names[1]][5] == "2", rows[names[1]]
        assert rows[names[0]][3] == "" and rows[names[2]][5] == "1"

        reference = course["assignment"] / "reference" / "lab.ipynb"
        graded = workshop("grade", str(reference), str(out), "--json", str(tmp_path / "g.json"), "-q", check=False)
        assert graded.returncode == 0, graded.stdout + graded.stderr
        scores = {r["student"]: r["total"] for r in json.loads((tmp_path / "g.json").read_text())["submissions"]}
        assert scores[names[0]] == scores[names[1]] == VISIBLE_POINTS, scores
        assert scores[names[2]] < VISIBLE_POINTS, scores
