"""``docker:NAME``: a shell in the running container NAME on this machine's Docker engine.

The container is the student's or the notebook's (``docker run -d --name NAME
IMAGE sleep infinity``, from an image made with ``workshop docker image``);
workshop neither makes nor removes it.  The cell shell is ``docker exec -i
NAME /bin/sh ...`` (bash when the image has it), and its side commands —
interrupts, input answers, idle probes — run inside the container too, each
through a ``docker exec`` of its own, so they see the shell's processes by
the container's pids.  Uploads are ``cat`` through ``docker exec -i``.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from ..engine import docker_command, engine_problem
from ..errors import TargetError
from ..settings import Settings
from ..shell.channels import Channel, LocalChannel, Transport, run_argv
from ..shell.result import CommandResult
from . import Target

USAGE = "docker:NAME (a running container on this machine's Docker engine)"


class DockerTransport(Transport):
    """Container ``container``: every shell, side command and upload through ``docker exec``."""

    side_commands = "in the container, each through a docker exec of its own"

    def __init__(self, docker: str, container: str) -> None:
        self.argv = (docker, "exec", "-i", container, "/bin/sh", "-c")

    def channel(self, command: str) -> Channel:
        # exec: the docker client is the channel's process, and closing it ends the shell's input
        return LocalChannel("exec " + shlex.join([*self.argv, command]), aside=self.argv)

    def exec(self, command: str, stdin: bytes = b"", timeout: float = 60) -> CommandResult:
        return run_argv([*self.argv, command], stdin, timeout)

    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult:
        command = f"cat > {shlex.quote(path)}" + (f" && chmod {mode} {shlex.quote(path)}" if mode else "")
        return self.exec(command, stdin=data, timeout=300)

    def close(self) -> None:
        pass  # each shell is a docker client process; its LocalChannel ends it


@dataclass
class DockerTarget(Target):
    container_id: str = ""
    rerun_where = "in a container on the grading machine"
    rerun_proof = (" These reruns ran in one container on the grader's machine, used as it was: what a submission "
                   "left in it was there for the next.")
    doctor_needs = frozenset({"setup: Docker", "Docker engine"})

    def prepare(self, progress=None) -> None:
        """Find the running container (its id: a container made again under the name is another one)."""
        problem = self._problem()
        if problem:
            raise TargetError(f"{self.spec}: {problem[0]}; {problem[1]}")

    def _problem(self) -> tuple[str, str] | None:
        why = engine_problem()
        if why:
            found, _, fix = why.partition("; ")
            return found, fix
        done = subprocess.run([docker_command() or "docker", "inspect", "--type", "container", "--format",
                               "{{.Id}} {{.State.Status}}", self.name], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            return (f"the Docker engine has no container named '{self.name}'",
                    f"start one with `docker run -d --name {self.name} IMAGE sleep infinity` "
                    "(`docker ps -a` lists the containers)")
        cid, _, state = done.stdout.strip().partition(" ")
        if state != "running":
            return f"the container {self.name} is not running ({state})", f"start it with `docker start {self.name}`"
        self.container_id = cid
        return None

    def open(self) -> Transport:
        return DockerTransport(docker_command() or "docker", self.container_id or self.name)

    def address(self) -> tuple:
        return (self.spec, self.container_id)

    def not_ready(self) -> tuple[str, str] | None:
        return self._problem()

    def start_hint(self) -> str:
        return f"start it with `docker start {self.name}`"


TARGET = DockerTarget


def completions() -> list[str]:
    """The running containers, when the engine answers at once."""
    docker = docker_command()
    if docker is None:
        return []
    try:
        done = subprocess.run([docker, "ps", "--format", "docker:{{.Names}}"], capture_output=True, text=True,
                              timeout=2, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split() if done.returncode == 0 else []


def parse(spec: str, settings: Settings) -> DockerTarget:
    name = spec.partition(":")[2]
    if not name:
        raise TargetError("'docker:' needs a container name, e.g. docker:lab (`docker ps` lists the running ones)")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise TargetError(f"'{spec}': a container name has only letters, digits, '-', '_' and '.'")
    return DockerTarget(spec=spec, kind="docker", name=name)
