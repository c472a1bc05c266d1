"""Students of a course hub, for real: local users (useradd, removed after) each
running a workshop kernel as themselves with the environment the hub gives it
(hub.json's "vm"), so every student's cells run on their own ``qemu:course`` VM
restored from the hub's shared, read-only snapshot. Used by tests/test_hub_vm.py
and bench/hub_load.py (as root: it adds users and runs processes as them)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hub_lab import ROOT, as_user, hub_vm_cache, kill_processes_of, readable_by_others

from workshop.hub.config import VM_NAME, vm_environment
from workshop.hub.server import others_can_run

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
        started = time.monotonic()
        result = kernel.run(cmd["cell"], timeout=600)
        seconds = time.monotonic() - started
        shown = "".join(m["content"].get("text", "") or m["content"].get("data", {}).get("text/plain", "")
                        for m in result.messages)
        reply = {"status": result.status, "stdout": result.stdout, "shown": shown, "seconds": seconds,
                 "errors": [e["evalue"] for e in result.errors], "record": result.record}
    elif cmd.get("state"):
        reply = vm.state() | {"kernel_pid": kernel.km.provisioner.pid}
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


def users_cannot_run_python() -> str | None:
    """Why ordinary users cannot run this Python, even through :func:`as_user`; None when they can."""
    if others_can_run(sys.executable) or Path(os.path.realpath(sys.executable)).is_relative_to("/root"):
        return None
    return f"ordinary users cannot run {sys.executable}: bash scripts/setup --test --python /usr/bin/python3"


class Student:
    """One student's kernel, run as ``name`` by :data:`DRIVER`; ``ask`` sends it one command."""

    def __init__(self, name: str, env: dict[str, str], tools: Path):
        self.name = name
        self.home = Path(pwd.getpwnam(name).pw_dir)
        # a session of its own: Ctrl-C at a terminal reaches the caller, which shuts it down in order
        self.proc = subprocess.Popen(
            as_user(name, [sys.executable, "-c", DRIVER, str(tools), VM_NAME]), env=env, cwd=self.home,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

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


def hub_vm(hub_dir: Path, vm: dict) -> subprocess.CompletedProcess:
    """A hub's directory with only hub.json (its "vm" ``vm``, in the hub's cache), and
    `workshop hub vm` run on it: the students' image (linked from the developer's
    cache when that has it) and its snapshot, saved once, as root."""
    (hub_dir / "hub.json").write_text(json.dumps({
        "ip": "127.0.0.1", "port": 8000, "group": "students", "admins": [], "vm": {"cache": str(hub_vm_cache()), **vm}}))
    return subprocess.run([sys.executable, "-m", "workshop", "hub", "vm", "--dir", str(hub_dir)], env=_clean_env(),
                          capture_output=True, text=True, timeout=900, cwd="/")


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("WORKSHOP_")}


def student_tools(kernelspec: bool = True) -> Path:
    """A directory every user can read with the driver's harness (and the workshop
    kernelspec, in its share/jupyter); the caller removes it."""
    spec = Path(tempfile.mkdtemp(prefix="workshop-spec-", dir="/var/tmp"))
    os.chmod(spec, 0o755)
    if kernelspec:
        from workshop.kernelspec_install import install

        install(prefix=str(spec))
    shutil.copy(ROOT / "tests" / "harness.py", spec)  # the students' driver imports it
    return spec


def student_env(hub_dir: Path, jupyter_path: Path) -> dict[str, str]:
    """What a student's kernel gets: the hub's VM environment, this checkout's code when
    users can read it (else the installed copy runs), the kernelspecs of ``jupyter_path``."""
    env = _clean_env() | {"JUPYTER_PATH": str(jupyter_path)}
    if readable_by_others(ROOT / "workshop" / "__init__.py"):
        env["PYTHONPATH"] = str(ROOT)
    else:
        env.pop("PYTHONPATH", None)
    env.pop("XDG_DATA_HOME", None)
    return env | vm_environment(hub_dir)


def add_users(count: int, prefix: str) -> list[str]:
    """``count`` new local users (homes readable by all: the tool closes its own files itself)."""
    names = []
    try:
        for _ in range(count):
            name = f"{prefix}{secrets.token_hex(3)}"
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
            names.append(name)
            os.chmod(pwd.getpwnam(name).pw_dir, 0o755)
    except BaseException:
        remove_users(names)
        raise
    return names


def remove_users(names: list[str]) -> None:
    """The users, their homes and every process they still run."""
    for name in names:
        with contextlib.suppress(KeyError):
            kill_processes_of(pwd.getpwnam(name).pw_uid)
        subprocess.run(["userdel", "--remove", "--force", name], check=False, capture_output=True)
