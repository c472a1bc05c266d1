"""``local``: a shell on the machine the kernel runs on."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TargetError
from ..settings import Settings
from ..shell.channels import LocalTransport, Transport
from . import Target

USAGE = "local"


@dataclass
class LocalTarget(Target):
    is_local = True
    rerun_where = "on the grading machine"
    rerun_proof = (" These reruns ran on the grader's own machine (--run-student-code-on-this-machine): each had a "
                   "fresh directory, a cgroup and time limits, but no isolation from this machine or from each other.")
    doctor_needs = frozenset({"setup: local notebooks"})

    def describe(self) -> str:
        return "local"

    def open(self) -> Transport:
        return LocalTransport()


TARGET = LocalTarget


def parse(spec: str, settings: Settings) -> LocalTarget:
    if spec not in ("", "local"):
        raise TargetError(f"'{spec}': the local target takes no name or options; write local")
    return LocalTarget(spec="local", kind="local", name="local")
