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
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from harness import loopback_listener
from hub_lab import HUB_CACHE, assert_shut_out, vm_login
from students import (
    Student,
    add_users,
    hub_vm,
    remove_users,
    student_env,
    student_tools,
    users_cannot_run_python,
)

from workshop.hub.config import VM_NAME
from workshop.vm.clone import VM_SLOTS
from workshop.vm.machine import _pid_alive

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.vm, pytest.mark.timeout(1500),
              pytest.mark.skipif(os.geteuid() != 0, reason="the test adds users and runs kernels as them"),
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                 reason="qemu is missing: bash scripts/setup --vm")]


@pytest.fixture(scope="module")
def course():
    """The hub's settings and VM cache (its snapshot saved once, as root), and two students."""
    cannot = users_cannot_run_python()
    if cannot:
        pytest.skip(cannot)
    hub_dir = Path(tempfile.mkdtemp(prefix="workshop-hubvm-", dir="/var/tmp"))
    os.chmod(hub_dir, 0o755)
    spec = student_tools()
    names = []
    try:
        built = hub_vm(hub_dir, {"memory_mb": 512, "per_student": 1, "at_once": 50})
        assert built.returncode == 0, built.stderr[-3000:]
        assert json.loads((hub_dir / "hub.json").read_text())["vm"]["enabled"], "students' cells now run on VMs"
        assert (HUB_CACHE / VM_SLOTS).stat().st_mode & 0o777 == 0o644, "students lock it read-only as their VM starts"
        names = add_users(2, "wsv")
        yield {"names": names, "env": student_env(hub_dir, spec / "share" / "jupyter"), "tools": spec}
    finally:
        remove_users(names)
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
