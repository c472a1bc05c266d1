"""The lab's Docker engine on this machine: found when it answers, started when it does not.

Debian's ``docker.io`` (``bash scripts/setup --docker``) brings ``dockerd`` and
the ``docker`` command.  :func:`engine_up` (``workshop docker up``, as root)
first asks the engine; when nothing answers it starts one:

- with systemd as PID 1, ``systemctl start docker`` (the package enables the
  unit; systemd owns that engine and ``workshop docker down`` leaves it alone);
- without systemd (a container, the micro VM's busybox init), ``dockerd`` in a
  session of its own, its pid in :data:`PID_FILE` and its log in
  :data:`LOG_FILE`.  That engine runs until ``workshop docker down`` (which
  stops only a dockerd whose pid file it finds) or the machine stops.  The
  micro VM starts its engine at boot, and it ends with the VM.

Images are made here, never pulled: :func:`import_rootfs` turns a root
filesystem the course made (``%rootfs DIR``) into an image with ``docker
import``, with a PATH (an imported image has no environment of its own).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .errors import WorkshopError

PID_FILE = Path("/run/workshop/dockerd.pid")
LOG_FILE = Path("/var/log/workshop-dockerd.log")
INSTALL_HINT = "`bash scripts/setup --docker` installs Debian's docker.io"
START_HINT = "`workshop docker up` (as root) starts it"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class EngineError(WorkshopError):
    """The Docker engine is missing, does not answer, or cannot be started."""


def docker_command() -> str | None:
    """The ``docker`` client on PATH, or None."""
    return shutil.which("docker")


def _dockerd() -> str | None:
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.path.exists(p)), None)


def server_version(timeout: float = 15) -> str | None:
    """The engine's version when it answers, else None."""
    exe = docker_command()
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.strip()
    return version if done.returncode == 0 and version else None


def engine_problem() -> str | None:
    """Why the engine cannot be used here, in one sentence with its fix; None when it answers."""
    if docker_command() is None:
        return f"the `docker` command is not installed; {INSTALL_HINT}"
    if server_version() is None:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        fix = START_HINT if _dockerd() else INSTALL_HINT
        return f"the Docker engine does not answer at {where}; {fix}"
    return None


def _systemd_runs() -> bool:
    return os.path.isdir("/run/systemd/system")


def _our_pid() -> int | None:
    """The pid of the dockerd this module started, while it runs."""
    try:
        pid = int(PID_FILE.read_text().split()[0])
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            name, _, rest = fh.read().partition(") ")
        return pid if name.endswith("(dockerd") and rest[:1] not in ("Z", "X") else None  # not a zombie
    except (OSError, ValueError, IndexError):
        return None


def engine_up(timeout: float = 60) -> str:
    """Find the engine or start it; what was done, in a few words.  Raises EngineError."""
    version = server_version()
    if version:
        return f"the engine answers (Docker {version})"
    if docker_command() is None or _dockerd() is None:
        raise EngineError(f"Docker is not installed here; {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise EngineError("starting the Docker engine needs root; run `sudo workshop docker up`")
    if _systemd_runs():
        done = subprocess.run(["systemctl", "start", "docker"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EngineError(f"`systemctl start docker` failed: {done.stderr.strip()}; "
                              "`journalctl -u docker` says why")
        how, proc = "started docker.service", None
    else:
        proc = _start_dockerd()
        how = f"started dockerd (pid {proc.pid}; `workshop docker down` stops it)"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = server_version()
        if version:
            return f"{how}: Docker {version}"
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    raise EngineError(f"the Docker engine did not answer within {timeout:g} s; its log says why "
                      f"({LOG_FILE if not _systemd_runs() else 'journalctl -u docker'})")


def _start_dockerd() -> subprocess.Popen:
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG_FILE, "ab") as log:
        proc = subprocess.Popen([_dockerd() or "dockerd", "--pidfile", str(PID_FILE)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    return proc


def engine_down(timeout: float = 30) -> str:
    """Stop the dockerd :func:`engine_up` started (never one that systemd or someone else runs)."""
    pid = _our_pid()
    if pid is None:
        if server_version():
            return "the engine that answers was not started by workshop; it is left running"
        return "no engine runs"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _our_pid() == pid:
        time.sleep(0.2)
    if _our_pid() == pid:
        os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    return f"stopped dockerd (pid {pid})"


def import_rootfs(rootfs: Path | str, image: str, timeout: float = 300) -> str:
    """Make image ``image`` from the root filesystem at ``rootfs`` (``tar | docker import``),
    offline; its id.  Raises EngineError."""
    rootfs = Path(rootfs)
    if not (rootfs / "bin").is_dir():
        raise EngineError(f"{rootfs} is not a root filesystem (no bin/ in it); make one with `%rootfs {rootfs}`")
    problem = engine_problem()
    if problem:
        raise EngineError(problem)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        done = subprocess.run([docker_command() or "docker", "import", "--change", f"ENV PATH={IMAGE_PATH}",
                               "--change", 'CMD ["/bin/sh"]', "-", image], stdin=tar.stdout, capture_output=True,
                              text=True, timeout=timeout, check=False)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if done.returncode != 0 or tar.returncode != 0:
        raise EngineError(f"`docker import` of {rootfs} as {image} failed: {done.stderr.strip() or 'tar failed'}")
    return done.stdout.strip()
