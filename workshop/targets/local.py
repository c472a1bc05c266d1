"""``local``: a shell on the machine the kernel runs on."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TargetError
from ..shell.channels import LocalTransport, Transport
from . import Target

USAGE = "local"


@dataclass
class LocalTarget(Target):
    def describe(self) -> str:
        return "local"

    def open(self) -> Transport:
        return LocalTransport()


def parse(spec: str) -> LocalTarget:
    if spec not in ("", "local"):
        raise TargetError(f"'{spec}': the local target takes no name or options; write local")
    return LocalTarget(spec="local", kind="local", name="local")
