"""The hub's directory, and starting and stopping the hub without systemd.

The directory (``/var/lib/workshop-hub`` unless told otherwise) holds the
``jupyterhub_config.py`` an instructor edits, the proxy installed from the npm
registry, the kernelspec every student's server uses, the course notebooks, and
what the running hub keeps: its database, cookie secret, pid files and log."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from ..errors import WorkshopError
from . import limits
from .config import SERVICE, SETTINGS, proxy_command, read_settings, vm_environment

DEFAULT_DIR = Path("/var/lib/workshop-hub")
PROXY_PACKAGE = "configurable-http-proxy@4"
CONFIG = """\
# The course hub: `workshop hub down && workshop hub up` applies a change.
# Address, port, the students' group and the admins are in hub.json beside this
# file; lines after configure() override what it sets.
from workshop.hub.config import configure

configure(c, {dir!r})
"""


def install(hub_dir: Path, course: Path | None = None, ip: str | None = None, port: int | None = None,
            group: str | None = None, admins: tuple[str, ...] = (), exchange: Path | None = None) -> list[str]:
    """Lay out ``hub_dir``; a second run changes nothing but the course notebooks and
    the settings it is given (ip, port, group, admins, the exchange: the rest of hub.json
    and an edited config are kept). Returns what was done, one line each."""
    _need_root("install the hub")
    if not others_can_run(sys.executable):
        raise WorkshopError(f"ordinary users cannot run {sys.executable}, so no student's server would start: make the "
                            "package's venv from a Python they can run (bash scripts/setup --hub --python /usr/bin/python3).")
    done = []
    hub_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(hub_dir, 0o755)  # students' servers read share/ and course/; the secrets are 0600
    token = hub_dir / "service-token"
    if not token.exists():
        _write_private(token, secrets.token_hex(32) + "\n")
        done.append(f"a token for the hub's {SERVICE} service in {token}")
    settings = hub_dir / SETTINGS
    given = {"ip": ip, "port": port, "group": group, "admins": list(admins) or None,
             "exchange": str(exchange.resolve()) if exchange is not None else None}
    before = read_settings(hub_dir) if settings.exists() else {"ip": "127.0.0.1", "port": 8000, "group": "students",
                                                                 "admins": []}
    after = before | {key: value for key, value in given.items() if value is not None}
    if after != before or not settings.exists():
        settings.write_text(json.dumps(after, indent=2) + "\n")
        done.append(f"{settings}: {after['ip']}:{after['port']}, the users of group {after['group']}"
                    + (f", admins {', '.join(after['admins'])}" if after["admins"] else "")
                    + (f"; students fetch from and hand in to the course at {after['exchange']}"
                       if after.get("exchange") else ""))
    try:
        grp.getgrnam(after["group"])
    except KeyError:  # the README's `usermod -aG students NAME` needs it
        subprocess.run(["groupadd", after["group"]], check=True)
        done.append(f"the group {after['group']}: its users log in (usermod -aG {after['group']} NAME adds one)")
    config = hub_dir / "jupyterhub_config.py"
    if not config.exists():
        config.write_text(CONFIG.format(dir=str(hub_dir)))
        done.append(f"{config}")
    from ..kernelspec_install import install as install_kernel

    spec = hub_dir / "share" / "jupyter" / "kernels" / "workshop" / "kernel.json"
    before = spec.read_text() if spec.exists() else None
    install_kernel(prefix=str(hub_dir))
    if spec.read_text() != before:
        done.append(f"the workshop kernel in {spec.parent}")
    if course is not None:
        copied = _copy_course(course, hub_dir / "course")
        if copied:
            done.append(f"{copied} course notebooks of {course} in {hub_dir / 'course'}")
    if not proxy_command(hub_dir).exists():
        npm = shutil.which("npm")
        if npm is None:
            raise WorkshopError("npm is missing: install Node.js and npm (bash scripts/setup --hub does) and run this again.")
        subprocess.run([npm, "install", "--prefix", str(hub_dir / "proxy"), "--no-audit", "--no-fund", PROXY_PACKAGE],
                       check=True, stdout=subprocess.DEVNULL)
        done.append(f"{PROXY_PACKAGE} in {hub_dir / 'proxy'}")
    return done


def build_vm(hub_dir: Path, say) -> str:
    """Build the students' VM image and save its snapshot, once, into the hub's VM cache
    (hub.json's "vm"), which students read but cannot change; returns the snapshot's path."""
    _need_root("build the students' VM", "students may read its cache, never change it")
    if not (hub_dir / SETTINGS).exists():
        raise WorkshopError(f"{hub_dir} has no hub: run `workshop hub install --dir {hub_dir}` first.")
    os.environ.update({name: value for name, value in vm_environment(hub_dir).items()
                       if name in ("WORKSHOP_VM_CACHE", "WORKSHOP_VM_MEMORY")})
    from ..settings import Settings
    from ..vm.clone import VM_SLOTS
    from ..vm.image import build_image, images_dir
    from ..vm.machine import kvm_usable
    from ..vm.snapshot import ensure_snapshot

    settings = Settings()
    cache = images_dir()
    os.chmod(cache, 0o755)
    image, _ = build_image(say)
    usable, _ = kvm_usable(settings)
    snap = ensure_snapshot(image, "kvm" if usable else "tcg", settings.vm_memory, settings.vm_cpus, say)
    for path in (cache, cache / "snapshots", image.dir, snap.dir):
        os.chmod(path, 0o755)  # the image's own login key stays root's (0600)
    for base in cache.glob("base-*"):  # debootstrap's tree, /tmp open to all in it: the image is made from it
        os.chmod(base, 0o700)
    slots = cache / VM_SLOTS  # students lock it, read-only, while their VM starts
    slots.touch()
    os.chmod(slots, 0o644)
    settings_file = hub_dir / SETTINGS
    hub_settings = read_settings(hub_dir)
    hub_settings["vm"] = hub_settings.get("vm", {}) | {"enabled": True}
    settings_file.write_text(json.dumps(hub_settings, indent=2) + "\n")
    return str(snap.dir)


def _copy_course(source: Path, dest: Path) -> int:
    """The notebooks of ``source`` that ``dest`` lacks or has older copies of;
    how many were copied."""
    copied = 0
    for notebook in sorted(source.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        target = dest / notebook.relative_to(source)
        if not target.exists() or target.read_bytes() != notebook.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, target)
            copied += 1
    return copied


def others_can_run(python: str) -> bool:
    """Whether a user other than root (nobody) can start this Python."""
    try:
        return subprocess.run([python, "-c", "pass"], user=65534, group=65534, extra_groups=[], cwd="/",
                              capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _need_root(what: str, why: str = "it runs each student's server as that student") -> None:
    if os.geteuid() != 0:
        raise WorkshopError(f"only root can {what} ({why}): use sudo.")


def _pid_file(hub_dir: Path) -> Path:
    return hub_dir / "hub.pid"


def log_file(hub_dir: Path) -> Path:
    return hub_dir / "hub.log"


def running(hub_dir: Path) -> int | None:
    """The pid of the hub started from ``hub_dir``, when it still runs."""
    try:
        pid = int(_pid_file(hub_dir).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"jupyterhub" in cmdline else None


def url(hub_dir: Path) -> str:
    """The address users open, as the config file says it."""
    settings = read_settings(hub_dir)
    return f"http://{settings['ip']}:{settings['port']}/"


def up(hub_dir: Path, timeout: float = 120) -> str:
    """Start the hub in the background (its own session, output in hub.log)
    and wait until it answers; returns its address."""
    _need_root("start the hub")
    config = hub_dir / "jupyterhub_config.py"
    if not config.exists():
        raise WorkshopError(f"{hub_dir} has no hub: run `workshop hub install --dir {hub_dir}` (or bash scripts/setup --hub) first.")
    address = url(hub_dir)
    if running(hub_dir):
        return address
    log = open(log_file(hub_dir), "ab")  # noqa: SIM115 - the hub keeps it
    os.chmod(log.name, 0o600)
    proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=hub_dir,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                            preexec_fn=lambda: os.umask(0o077))
    log.close()
    _pid_file(hub_dir).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WorkshopError(f"the hub stopped as it started; the end of {log_file(hub_dir)}:\n{_tail(hub_dir)}")
        if _answers(address + "hub/api/"):
            return address
        time.sleep(0.5)
    down(hub_dir)
    raise WorkshopError(f"the hub did not answer on {address} in {timeout:.0f} s; the end of {log_file(hub_dir)}:\n{_tail(hub_dir)}")


def _answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(address, timeout=5) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _tail(hub_dir: Path, lines: int = 20) -> str:
    return "\n".join(log_file(hub_dir).read_text(errors="replace").splitlines()[-lines:])


def down(hub_dir: Path, timeout: float = 30) -> bool:
    """Stop the hub (which stops the proxy and the students' servers); False
    when none ran."""
    pid = running(hub_dir)
    if pid is None:
        _pid_file(hub_dir).unlink(missing_ok=True)
        return False
    # The students' servers run in sessions of their own: the hub stops them, but
    # their kernels may still be ending when the hub has gone. Down means down.
    started = _started_by(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _zombie(pid):
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists() and not _zombie(pid):
        os.killpg(pid, signal.SIGKILL)
    _, left = psutil.wait_procs(started, timeout=max(1.0, deadline - time.monotonic()))
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    # and what a student detached from their server (it stays in their cgroup)
    limits.end_all(limits.parent_name(read_settings(hub_dir)["port"]))
    _pid_file(hub_dir).unlink(missing_ok=True)
    return True


def _started_by(pid: int) -> list[psutil.Process]:
    """What the hub runs: the proxy and the students' servers, with their kernels and shells."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def status(hub_dir: Path) -> dict:
    """Whether the hub runs, where, and (when it does) its users and their servers."""
    pid = running(hub_dir)
    result: dict = {"running": pid is not None, "pid": pid, "dir": str(hub_dir), "log": str(log_file(hub_dir))}
    if pid is None:
        return result
    result["url"] = url(hub_dir)
    result["users"] = {user["name"]: sorted(user.get("servers") or {}) for user in api(hub_dir, "GET", "users")}
    return result


def api(hub_dir: Path, method: str, path: str, body: dict | None = None):
    """The hub's REST API with the course service's token."""
    token = (hub_dir / "service-token").read_text().strip()
    request = urllib.request.Request(
        url(hub_dir) + "hub/api/" + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        text = reply.read()
    return json.loads(text) if text else None
