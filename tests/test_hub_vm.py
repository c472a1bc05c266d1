"""Each student's own VM, for real: a kernel run as an ordinary user (useradd here,
removed after) with the environment a course hub gives it (hub.json's "vm") runs its
first cell as root in a qemu VM of that student's, restored from the hub's shared,
read-only snapshot (built once, as root, by `workshop hub vm`), with a login key of
its own. Another student cannot log in to it; the image's shared key no longer
logs in; the VM reaches neither the host's loopback services nor the network; a VM
killed is replaced on the next cell; the limits (VMs per student, VMs on the machine)
refuse in one sentence;
the VM stops with the kernel."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from harness import loopback_listener
from hub_lab import (
    ROOT,
    as_user,
    assert_shut_out,
    build_hub_vm,
    hub_vm_cache,
    kill_processes_of,
    readable_by_others,
    vm_login,
)

from workshop.hub.config import VM_NAME, vm_environment
from workshop.vm.clone import VM_SLOTS
from workshop.vm.machine import _pid_alive

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.vm, pytest.mark.timeout(1500),
              pytest.mark.skipif(os.geteuid() != 0, reason="the test adds users and runs kernels as them"),
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                 reason="qemu is missing: bash scripts/setup --vm")]

# Runs as the student: one kernel (the hub's kernelspec), commands as JSON lines on stdin.
DRIVER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from harness import KernelHarness
from workshop.vm.machine import VM

kernel = KernelHarness(env=dict(os.environ))
vm = VM(sys.argv[2])
for line in sys.stdin:
    cmd = json.loads(line)
    if "cell" in cmd:
        result = kernel.run(cmd["cell"], timeout=600)
        shown = "".join(m["content"].get("text", "") or m["content"].get("data", {}).get("text/plain", "")
                        for m in result.messages)
        reply = {"status": result.status, "stdout": result.stdout, "shown": shown,
                 "errors": [e["evalue"] for e in result.errors], "record": result.record}
    elif cmd.get("state"):
        reply = vm.state()
    elif cmd.get("kill"):  # as the OOM killer would; the next cell comes once it is dead
        os.kill(vm.state()["pid"], 9)
        deadline = time.monotonic() + 30
        while vm.running and time.monotonic() < deadline:
            time.sleep(0.1)
        reply = {"dead": not vm.running}
    else:
        kernel.shutdown()
        reply = {"vm_left": vm.dir.exists()}
    print(json.dumps(reply), flush=True)
"""


class Student:
    def __init__(self, name: str, env: dict[str, str], tools: Path):
        self.name = name
        self.home = Path(pwd.getpwnam(name).pw_dir)
        self.proc = subprocess.Popen(
            as_user(name, [sys.executable, "-c", DRIVER, str(tools), VM_NAME]), env=env,
            cwd=self.home, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ask(self, **cmd) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"{self.name}'s kernel driver ended: {self.proc.stderr.read() if self.proc.stderr else ''}"
        return json.loads(line)

    def cell(self, code: str) -> dict:
        return self.ask(cell=code)

    def close(self) -> dict:
        try:
            return self.ask(quit=True)
        finally:
            self.proc.stdin.close()
            self.proc.wait(60)


@pytest.fixture(scope="module")
def course():
    """The hub's settings and VM cache (its snapshot saved once, as root), and two students."""
    cache = hub_vm_cache()
    hub_dir = Path(tempfile.mkdtemp(prefix="workshop-hubvm-", dir="/var/tmp"))
    os.chmod(hub_dir, 0o755)
    (hub_dir / "hub.json").write_text(json.dumps({
        "ip": "127.0.0.1", "port": 8000, "group": "students", "admins": [],
        "vm": {"cache": str(cache), "memory_mb": 512, "per_student": 1, "at_once": 50}}))
    build_hub_vm(hub_dir)
    assert json.loads((hub_dir / "hub.json").read_text())["vm"]["enabled"], "students' cells now run on VMs"
    assert (cache / VM_SLOTS).stat().st_mode & 0o777 == 0o644, "students lock it read-only as their VM starts"
    spec = Path(tempfile.mkdtemp(prefix="workshop-spec-", dir="/var/tmp"))
    os.chmod(spec, 0o755)
    from workshop.kernelspec_install import install

    install(prefix=str(spec))
    shutil.copy(ROOT / "tests" / "harness.py", spec)  # the students' driver imports it
    names = [f"wsv{secrets.token_hex(3)}" for _ in range(2)]
    try:
        for name in names:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
            os.chmod(pwd.getpwnam(name).pw_dir, 0o755)  # the tool's own files must be closed by themselves
        env = {key: value for key, value in os.environ.items() if not key.startswith("WORKSHOP_")}
        base = env | {"JUPYTER_PATH": str(spec / "share" / "jupyter")}
        if readable_by_others(ROOT / "workshop" / "__init__.py"):  # else the installed copy runs
            base["PYTHONPATH"] = str(ROOT)
        else:
            base.pop("PYTHONPATH", None)
        base.pop("XDG_DATA_HOME", None)
        base.pop("WORKSHOP_DATA_DIR", None)
        yield {"names": names, "env": base | vm_environment(hub_dir), "tools": spec}
    finally:
        for name in names:
            kill_processes_of(pwd.getpwnam(name).pw_uid)
            subprocess.run(["userdel", "--remove", "--force", name], check=False, capture_output=True)
        shutil.rmtree(hub_dir, ignore_errors=True)
        shutil.rmtree(spec, ignore_errors=True)


@pytest.fixture
def host_service():
    """A TCP service on the host's loopback, as the hub's own API would be; what connected."""
    server, reached = loopback_listener()
    yield server.getsockname()[1], reached
    server.close()


def test_a_student_works_as_root_on_their_own_vm_that_no_one_else_enters(course, host_service):
    a, b = course["names"]
    port, reached = host_service
    student = Student(a, course["env"], course["tools"])
    try:
        first = student.cell("id -u; cat /proc/sys/kernel/random/boot_id >/dev/null && echo in-the-vm")
        assert first["status"] == "ok", first
        assert first["stdout"].split() == ["0", "in-the-vm"], first
        assert "qemu" in json.dumps(first["record"]["target"]), first["record"]
        state = student.ask(state=True)
        host_uid = pwd.getpwnam(a).pw_uid
        assert os.stat(f"/proc/{state['pid']}").st_uid == host_uid, "qemu runs as the student"
        assert state["snapshot"] and state["private_key"].startswith(str(Path(pwd.getpwnam(a).pw_dir)))

        # no way out: not the host's loopback (10.0.2.2), not the internet, not DNS
        probe = student.cell(
            f"for to in 10.0.2.2/{port} 10.0.2.2/22 1.1.1.1/53 10.0.2.3/53; do "
            "timeout 5 bash -c \"echo > /dev/tcp/$to\" 2>/dev/null && echo REACHED $to || echo blocked; done")
        assert probe["stdout"].split() == ["blocked"] * 4, probe
        assert reached == [], "the VM reached a service on the host's loopback"

        # another student: the key, known hosts and records are closed to them; their own key is refused
        assert_shut_out(b, a, state)
        image_key = Path(state["image"]) / "id_ed25519"
        shared = subprocess.run(f"{vm_login(state['port'])} -i {image_key} && echo LOGGED-IN || echo refused", shell=True,
                                capture_output=True, text=True, timeout=120)
        assert shared.stdout.split() == ["refused"], "the image's shared key still logs in: " + shared.stderr

        # the machine-wide limit: one VM runs (this one), the limit is one
        other = Student(b, course["env"] | {"WORKSHOP_VM_MAX_RUNNING": "1"}, course["tools"])
        try:
            refused = other.cell("id -u")
            assert refused["status"] == "error", refused
            said = " ".join(refused["errors"]) + refused["shown"]
            assert "this machine already runs" in said and "the most its administrator allows" in said, said
        finally:
            other.close()

        # one VM per student (hub.json's per_student): a second one is refused, the first one still serves
        second = student.cell("%target qemu:second\nid -u")
        said = " ".join(second["errors"]) + second["shown"]
        assert second["status"] == "error" and "you already run 1 VM(s) (course), the most" in said, second
        back = student.cell(f"%target qemu:{VM_NAME}\nid -u")
        assert back["status"] == "ok" and back["stdout"].split()[-1:] == ["0"], back

        # a VM that dies is replaced, and the next cell runs on the replacement
        assert student.ask(kill=True) == {"dead": True}
        again = student.cell("id -u")
        assert again["status"] == "ok" and again["stdout"].split() == ["0"], again
        assert student.ask(state=True)["port"] != state["port"] or student.ask(state=True)["pid"] != state["pid"]
    finally:
        closed = student.close()
    assert closed == {"vm_left": False}, "the VM stops with the kernel"


def test_an_idle_vm_is_stopped_and_the_next_cell_restores_one_and_says_so(course):
    student = Student(course["names"][0], course["env"] | {"WORKSHOP_VM_IDLE_MINUTES": "0.1"}, course["tools"])
    try:
        first = student.cell("echo kept > /root/file; id -u")
        assert first["status"] == "ok" and first["stdout"].split() == ["0"], first
        pid = student.ask(state=True)["pid"]
        deadline = time.monotonic() + 60
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _pid_alive(pid), "the idle VM was not stopped"
        again = student.cell("cat /root/file 2>/dev/null || echo fresh")
        assert again["status"] == "ok" and again["stdout"].split() == ["fresh"], again
        assert "stopped after 0.1 idle minutes, with the files in it" in again["shown"], again
    finally:
        closed = student.close()
    assert closed == {"vm_left": False}
