"""The hub's settings, applied by the ``jupyterhub_config.py`` that ``workshop
hub install`` writes (it runs inside the JupyterHub process, as root)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

SERVICE = "workshop"  # the hub service whose token the `workshop hub` commands use
KERNEL = "workshop"
VM_NAME = "course"  # each student's own VM: qemu:course
SETTINGS = "hub.json"
# Each student's VM, as hub.json's "vm" may change it: whether students' cells run on
# one (set by `workshop hub vm`, which builds it once, as root), the image cache
# (read-only for students), memory per VM in MB, VMs a student may run at once, VMs
# the machine runs at once (0: no limit), and the minutes without a cell after which a
# student's VM is stopped, the kernel kept: the next cell restores one (0: never).
VM_DEFAULTS = {"enabled": False, "cache": "", "memory_mb": 1024, "per_student": 1, "at_once": 0,
               "idle_minutes": 0}


def read_settings(hub_dir: Path) -> dict:
    """What ``workshop hub install`` was told: ip, port, group, admins, "exchange" (the course
    directory students fetch from and hand in to, when not the default) and "vm" (see VM_DEFAULTS)."""
    return json.loads((hub_dir / SETTINGS).read_text())


def exchange_dir(hub_dir: Path) -> Path:
    """The course directory of ``workshop exchange`` the hub's students use."""
    from ..settings import Settings

    return Path(read_settings(hub_dir).get("exchange") or Settings().course_dir)


def vm_settings(hub_dir: Path) -> dict:
    vm = VM_DEFAULTS | read_settings(hub_dir).get("vm", {})
    vm["cache"] = vm["cache"] or str(hub_dir / "vm")
    return vm


def vm_environment(hub_dir: Path) -> dict[str, str]:
    """What a student's kernel is told: its cells run on the student's own VM, restored
    from the hub's snapshot, within the instructor's limits (workshop/settings.py)."""
    vm = vm_settings(hub_dir)
    return {
        "WORKSHOP_TARGET": f"qemu:{VM_NAME}",
        "WORKSHOP_VM_RESTORE": "1",
        "WORKSHOP_VM_CACHE": vm["cache"],
        "WORKSHOP_VM_MEMORY": str(vm["memory_mb"]),
        "WORKSHOP_VM_MAX_PER_USER": str(vm["per_student"]),
        "WORKSHOP_VM_MAX_RUNNING": str(vm["at_once"]),
        "WORKSHOP_VM_IDLE_MINUTES": str(vm["idle_minutes"]),
    }


def configure(c, hub_dir: str | Path) -> None:
    """Local system users log in with their password (PAM) when they are in
    the course's group or among its admins; each gets a single-user server run
    as their own uid, whose default kernel is workshop, in a home only they can read."""
    hub_dir = Path(hub_dir)
    settings = read_settings(hub_dir)
    ip, port = settings["ip"], settings["port"]
    c.JupyterHub.bind_url = f"http://{ip}:{port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{port + 1}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 2}"
    c.ConfigurableHTTPProxy.command = [str(proxy_command(hub_dir))]
    c.JupyterHub.db_url = f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(hub_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.cleanup_servers = True  # `workshop hub down` stops the students' servers too
    c.ConfigurableHTTPProxy.pid_file = str(hub_dir / "proxy.pid")

    c.JupyterHub.authenticator_class = "pam"
    c.PAMAuthenticator.open_sessions = False  # no login session per server: no systemd-logind needed
    c.Authenticator.allowed_groups = {settings["group"]}
    c.Authenticator.admin_users = set(settings["admins"])

    token_file = hub_dir / "service-token"
    c.JupyterHub.services = [{"name": SERVICE, "api_token": token_file.read_text().strip()}]
    c.JupyterHub.load_roles = [{"name": "workshop-course", "services": [SERVICE],
                                "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users"]}]

    c.JupyterHub.spawner_class = "workshop.hub.spawner.StudentSpawner"  # each student in a cgroup of their own
    c.StudentSpawner.hub_dir = str(hub_dir)
    c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]
    c.Spawner.notebook_dir = "~"
    c.Spawner.default_url = "/lab"
    c.Spawner.environment = {"JUPYTER_PATH": str(hub_dir / "share" / "jupyter")}
    if vm_settings(hub_dir)["enabled"]:  # else cells run on the server, as the student
        c.Spawner.environment |= vm_environment(hub_dir)
    if settings.get("exchange"):  # where %submit hands in (else the default course directory)
        c.Spawner.environment["WORKSHOP_COURSE_DIR"] = settings["exchange"]
    c.Spawner.args = [f"--MultiKernelManager.default_kernel_name={KERNEL}"]
    c.Spawner.start_timeout = 180  # a loaded 2-core machine starts a JupyterLab slowly
    c.Spawner.http_timeout = 180
    course, exchange = hub_dir / "course", exchange_dir(hub_dir)
    # in a thread: a fetch starts a Python, and the hub serves the other students meanwhile
    c.Spawner.pre_spawn_hook = lambda spawner: asyncio.get_running_loop().run_in_executor(
        None, prepare_home, spawner.user.name, course, exchange)


def proxy_command(hub_dir: Path) -> Path:
    return hub_dir / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"


def prepare_home(name: str, course: Path, exchange: Path | None = None) -> None:
    """Close the student's home to other users, copy the course notebooks the student
    does not have yet into ~/course, and fetch the assignments released in ``exchange``
    into ~/assignments (``workshop fetch``: a copy there is kept), all as the student
    (a link the student planted in their home never leads root anywhere)."""
    user = pwd.getpwnam(name)
    home = Path(user.pw_dir)
    info = os.lstat(home)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == user.pw_uid and info.st_mode & 0o077:
        os.chmod(home, stat.S_IMODE(info.st_mode) & 0o700)
    as_student = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    if course.is_dir():
        subprocess.run([*as_student, "sh", "-c", 'mkdir -p "$2" && cp -R -n "$1"/. "$2"/', "sh", str(course),
                        str(home / "course")], check=True, cwd="/", capture_output=True)
    if exchange is not None and (exchange / "released").is_dir():  # nothing released yet: the student fetches later
        fetched = subprocess.run([*as_student, "env", f"HOME={home}", sys.executable, "-m", "workshop", "fetch",
                                  "--course", str(exchange)], check=False, cwd="/", capture_output=True, text=True,
                                 timeout=120)
        if fetched.returncode != 0:  # the server starts anyway: the student can run `workshop fetch` later
            logging.getLogger("JupyterHub").warning("fetching the assignments for %s failed: %s", name,
                                                    fetched.stderr.strip()[-500:])
