"""A course hub for the tests: `workshop hub install/up` on free loopback ports in a
directory of its own, its students made with useradd (and removed after), their
servers reached through the hub's API, commands run as a student, and the hub's
own VM cache (the students' shared, read-only snapshot of `workshop hub vm`)."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from harness import three_free_ports

from workshop.hub.server import others_can_run

ROOT = Path(__file__).resolve().parent.parent
SOURCE_CACHE = Path(os.environ.get("WORKSHOP_VM_CACHE") or "/var/tmp/wsvm")
# the hub's cache: its own, so that saving its snapshot never prunes one another run restores
HUB_CACHE = Path("/var/tmp/wsvm-hub")


def workshop(*args: str, check: bool = True, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `workshop` command, as root (the instructor)."""
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True, timeout=timeout,
                          check=check, cwd="/", env=env)


class Hub:
    def __init__(self, hub_dir: Path, port: int, group: str):
        self.dir, self.port, self.group = hub_dir, port, group
        self.url = f"http://127.0.0.1:{port}"
        self.service_token = (hub_dir / "service-token").read_text().strip()

    def call(self, token: str, method: str, path: str, body: dict | None = None, ok: bool = True):
        reply = requests.request(method, self.url + path, json=body, timeout=60,
                                 headers={"Authorization": f"token {token}"}, allow_redirects=False)
        if ok:
            assert reply.status_code < 300, f"{method} {path}: {reply.status_code} {reply.text[:500]}"
        return reply

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        """The hub's API with the course service's token (what `workshop hub` uses)."""
        reply = self.call(self.service_token, method, "/hub/api/" + path, body)
        return reply.json() if reply.text else {}

    def login_with_password(self, name: str, password: str) -> str:
        """The login form as a browser sends it; then a token asked for with the login cookie."""
        browser = requests.Session()
        browser.get(self.url + "/hub/login", timeout=60).raise_for_status()
        xsrf = browser.cookies.get("_xsrf", path="/hub/")
        reply = browser.post(self.url + "/hub/login", data={"username": name, "password": password, "_xsrf": xsrf},
                             allow_redirects=False, timeout=60)
        assert reply.status_code == 302, f"login as {name}: {reply.status_code} {reply.text[:500]}"
        reply = browser.post(self.url + f"/hub/api/users/{name}/tokens", json={"note": "test"},
                             headers={"X-XSRFToken": browser.cookies.get("_xsrf", path="/hub/")}, timeout=60)
        assert reply.status_code == 201, reply.text
        return reply.json()["token"]

    def token_for(self, name: str) -> str:
        """The hub's API as an admin logs a student in: the user, then a token of theirs."""
        self.admin("POST", f"users/{name}")
        return self.admin("POST", f"users/{name}/tokens", {"note": "test"})["token"]

    def start_servers(self, tokens: dict[str, str], timeout: float = 300) -> None:
        """Each student starts their server with their own token; back once all are ready."""
        for name, token in tokens.items():
            assert self.call(token, "GET", "/hub/api/user").json()["name"] == name
            self.call(token, "POST", f"/hub/api/users/{name}/server")
        deadline = time.monotonic() + timeout
        for name, token in tokens.items():
            while not (self.call(token, "GET", f"/hub/api/users/{name}").json().get("servers", {}).get("")
                       or {}).get("ready"):
                assert time.monotonic() < deadline, f"{name}'s server was not ready in {timeout:.0f} s:\n{self.log()}"
                time.sleep(1)

    def log(self) -> str:
        return (self.dir / "hub.log").read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def running_hub(prefix: str, *options: str, before_up=None):
    """A hub installed (with more ``options`` of `workshop hub install`) in a new directory for
    the users of a new group, on free ports, up; ``before_up(hub_dir)`` may change its settings
    first. Down and removed after."""
    hub_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(hub_dir, 0o755)
    port = three_free_ports()
    group = "wsh" + secrets.token_hex(3)
    subprocess.run(["groupadd", group], check=True)
    try:
        workshop("hub", "install", "--dir", str(hub_dir), "--port", str(port), "--group", group, *options)
        if before_up:
            before_up(hub_dir)
        up = workshop("hub", "up", "--dir", str(hub_dir))
        assert up.stdout.startswith(f"http://127.0.0.1:{port}/"), up.stdout + up.stderr
        yield Hub(hub_dir, port, group)
    finally:
        workshop("hub", "down", "--dir", str(hub_dir), check=False)
        subprocess.run(["groupdel", group], check=False)
        shutil.rmtree(hub_dir, ignore_errors=True)


@contextlib.contextmanager
def students_of(hub: Hub, count: int, password: str | None = None):
    """``count`` local users in the hub's group (the first with ``password``); their servers end before they do."""
    names = [f"{hub.group}s{i}" for i in range(count)]
    try:
        for name in names:
            subprocess.run(["useradd", "--create-home", "--groups", hub.group, "--shell", "/bin/bash", name], check=True)
        if password:
            subprocess.run(["chpasswd"], input=f"{names[0]}:{password}\n", text=True, check=True)
        yield names
    finally:
        workshop("hub", "down", "--dir", str(hub.dir), check=False)
        for name in names:
            kill_processes_of(pwd.getpwnam(name).pw_uid)
            subprocess.run(["userdel", "--remove", "--force", name], check=False, capture_output=True)


def kill_processes_of(uid: int) -> None:
    """What a test's own user left running (its qemu, should a test fail midway), by pid."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                os.kill(int(proc.name), 9)
        except OSError:
            continue


def kernel_uid(kernel_id: str) -> int:
    """The uid of the process started with this kernel's connection file."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"kernel-{kernel_id}.json".encode() in (proc / "cmdline").read_bytes():
                return proc.stat().st_uid
        except OSError:
            continue
    raise AssertionError(f"no process runs kernel {kernel_id}")


def stdout_of(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in messages
                   if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def as_user(name: str, argv: list[str]) -> list[str]:
    """``argv`` run as ``name``. When users cannot run this Python (it lives in root's
    home, as on a developer's machine; a hub's venv is made from /usr/bin/python3), a
    mount namespace of the test's shows them /root with only the Python's tree in it."""
    user = pwd.getpwnam(name)
    drop = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--",
            "env", f"HOME={user.pw_dir}", f"USER={name}", f"LOGNAME={name}", *argv]
    if others_can_run(sys.executable):
        return drop
    tree = Path(os.path.realpath(sys.executable))
    if not tree.is_relative_to("/root"):
        import pytest

        pytest.skip(f"ordinary users cannot run {sys.executable}: bash scripts/setup --test --python /usr/bin/python3")
    top = Path("/root") / tree.relative_to("/root").parts[0]
    script = ('set -e; v=$(mktemp -d); chmod 755 "$v"; mkdir "$v/$1"; mount --bind "/root/$1" "$v/$1"; '
              'mount --rbind "$v" /root; shift; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", top.name, *drop]


def run_as(name: str, command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A bash command run as ``name``."""
    return subprocess.run(as_user(name, ["bash", "-c", command]), capture_output=True, text=True, timeout=120,
                          cwd="/", env=env)


def readable_by_others(path: Path) -> bool:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", str(path)],
                          cwd="/").returncode == 0


def hub_vm_cache() -> Path:
    """The hub's VM cache, its image linked from the other VM tests' cache when that one
    has it (not built again); `workshop hub vm` then saves the students' snapshot in it."""
    from workshop.vm.image import image_key

    source = SOURCE_CACHE / f"bookworm-{image_key()}"
    image = HUB_CACHE / source.name
    if (source / "image.json").exists() and not (image / "image.json").exists():
        shutil.rmtree(image, ignore_errors=True)
        image.mkdir(parents=True)
        for entry in source.iterdir():
            os.link(entry, image / entry.name)
    return HUB_CACHE


def build_hub_vm(hub_dir: Path) -> None:
    """`workshop hub vm`, as root, with none of this test run's own WORKSHOP_ settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKSHOP_")}
    built = workshop("hub", "vm", "--dir", str(hub_dir), env=env, timeout=900, check=False)
    assert built.returncode == 0, built.stderr[-3000:]


def vm_state(name: str, vm: str) -> dict:
    """A student's VM as their kernel left it in their data dir (read as root)."""
    import json

    home = Path(pwd.getpwnam(name).pw_dir)
    try:
        return json.loads((home / ".local/share/workshop/vms" / vm / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def vm_login(port: int) -> str:
    """An ssh login as root to the VM on a loopback port, whatever host key answers (add -i KEY)."""
    return ("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o ConnectTimeout=20 -p {port} root@127.0.0.1 true")


def assert_shut_out(other: str, owner: str, state: dict) -> None:
    """``other`` (a local user) can read neither the login key of ``owner``'s VM (its ``state``),
    nor ``owner``'s known hosts or records, and a key of their own does not log in to it."""
    data = Path(pwd.getpwnam(owner).pw_dir) / ".local" / "share" / "workshop"
    peek = run_as(other, f"for f in {state['private_key']} {data}/known_hosts {data}/vms; do "
                         "cat $f >/dev/null 2>&1 || ls $f >/dev/null 2>&1 && echo READ $f || echo denied; done")
    assert peek.stdout.split() == ["denied"] * 3, peek
    own_key = run_as(other, f"mkdir -p ~/.ssh && ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/k && "
                            f"{vm_login(state['port'])} -i ~/.ssh/k && echo LOGGED-IN || echo refused")
    assert own_key.stdout.split()[-1:] == ["refused"], own_key
