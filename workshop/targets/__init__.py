"""Where cells run: a target spec names this machine or a machine reached over SSH.

Each kind of target is one module of this package, found by the spec's
prefix: ``local`` → :mod:`.local`, ``ssh://…`` and ``ssh:ALIAS`` → :mod:`.ssh`,
``qemu:NAME`` → :mod:`.qemu`, and so on.  A kind's module has ``USAGE`` (one
line for the help text) and ``parse(spec) -> Target``; its Target subclass
says how to get the machine ready (``prepare``) and how to reach it
(``open``).  A new kind is a new module, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from ..errors import TargetError
from ..shell.channels import Transport

Progress = Callable[[str], None]

__all__ = ["Target", "TargetError", "parse_target", "target_usage"]


@dataclass
class Target:
    """A machine reached over SSH; subclasses say how it is found."""

    spec: str
    kind: str
    name: str = ""
    host: str = ""
    port: int = 22
    user: str = ""
    key: str | None = None
    # Run the shell as root through passwordless sudo when the login user is not root.
    sudo: bool = False
    # filled in once connected
    host_key_fingerprint: str | None = None
    # False for kinds that may boot a machine or ask a slow tool before a shell
    # can start: nothing but a cell should pay for that (never a Tab key).
    quick_to_start = True

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}" if self.user else f"{self.host}:{self.port}"

    def prepare(self, progress: Progress | None = None) -> None:
        """Make the target ready before a shell starts on it (a VM boots, a
        port is looked up); ``progress(text)`` reports steps. Raises TargetError."""

    def open(self) -> Transport:
        """A connection to the target (not yet logged in: the first channel logs in)."""
        from ..shell.ssh import Endpoint, SSHConnection  # paramiko: only kernels that use SSH pay its import

        return SSHConnection(Endpoint(self.host, self.port, self.user, self.key, self.sudo))

    def gone(self) -> bool:
        """True when the machine a shell was started on is no longer there (a VM
        that stopped, or was booted again on another port): cheap, asked before
        every cell, never boots anything."""
        return False

    def unreachable(self) -> str | None:
        """Why the machine cannot answer now although it is there (a VM whose
        process is stopped), or None; cheap: asked while a cell is silent."""
        return None

    def sealed_agent(self):
        """The agent that runs this target's checks from outside the student's reach
        (a rerun's fresh VM: vm/agent.py), or None: checks then run in a clean shell
        opened like any other (shell/clean.py)."""
        return None

    def point_at(self, info: dict) -> None:
        """Connect through ``info``, in the fields ``bakerx ssh-info --format json``
        gives (hostname, port, user, private_key)."""
        self.host, self.port = info["hostname"], int(info["port"])
        self.user, self.key = info["user"], info["private_key"]

    def as_record(self) -> dict:
        local = self.is_local
        return {
            "kind": self.kind,
            "name": self.name or self.spec,
            "host": None if local else self.host,
            "port": None if local else self.port,
            "user": None if local else self.user,
            "sudo": self.sudo,
            "host_key_fingerprint": self.host_key_fingerprint,
        }


def _kind_of(spec: str) -> str:
    if spec in ("", "local"):
        return "local"
    if spec.startswith("ssh:"):
        return "ssh"
    return spec.partition(":")[0]


def _module(kind: str) -> ModuleType | None:
    if not kind.isidentifier() or kind.startswith("_"):
        return None
    try:
        return importlib.import_module(f"{__name__}.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{kind}":
            raise
        return None


def target_usage() -> str:
    """One line per kind, from the kinds' own modules."""
    kinds = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    order = {"local": 0, "ssh": 1}
    usages = [_module(kind).USAGE for kind in sorted(kinds, key=lambda k: (order.get(k, 2), k))]
    return "targets: " + " | ".join(usages)


def parse_target(spec: str) -> Target:
    """Turn a target spec into a Target of its kind; raises TargetError saying how to fix it."""
    spec = spec.strip()
    module = _module(_kind_of(spec))
    if module is None:
        raise TargetError(f"unknown target '{spec}'; {target_usage()}")
    return module.parse(spec)
