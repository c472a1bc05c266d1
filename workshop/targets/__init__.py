"""Where cells run: a target spec names this machine, a machine reached over SSH, or a container.

Each kind of target is one module of this package, found by the spec's
prefix: ``local`` → :mod:`.local`, ``ssh://…`` and ``ssh:ALIAS`` → :mod:`.ssh`,
``qemu:NAME`` → :mod:`.qemu`, ``docker:NAME`` → :mod:`.docker`, and so on.  A
kind's module has ``USAGE`` (one line for the help text), ``TARGET`` (its
Target subclass) and ``parse(spec, settings) -> Target``, and may have
``completions() -> list[str]`` (specs worth offering for ``%target``).  The
Target subclass carries everything callers ask of a kind: how it describes
itself and its record, how to get it ready (``prepare``) and reach it
(``open``), a fresh machine for each grading rerun (``fresh``), what reports
and feedback say a rerun there proves, and the rows ``workshop doctor``
requires.  No module outside this package asks a target its kind by name: a
new kind is a new module, nothing else.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import ClassVar

from ..errors import TargetError
from ..settings import Settings
from ..shell.channels import Transport

Progress = Callable[[str], None]

__all__ = ["Target", "TargetError", "kind_class", "parse_target", "target_completions", "target_usage"]


@dataclass
class Target(ABC):
    """A place cells run; subclasses say how it is found and reached."""

    spec: str
    kind: str
    name: str = ""
    # Run the shell as root through passwordless sudo when the login user is not root.
    sudo: bool = False
    # filled in once connected (the SSH host key; None elsewhere)
    host_key_fingerprint: str | None = None
    # The settings of the kernel or command that named this target (the SSH config
    # file, the VM's settings...): passed down by parse_target, never read afresh.
    settings: Settings | None = field(default=None, repr=False, compare=False, kw_only=True)
    # False for kinds that may boot a machine or ask a slow tool before a shell
    # can start: nothing but a cell should pay for that (never a Tab key).
    quick_to_start: ClassVar[bool] = True
    # True only for the machine the kernel itself runs on, unconfined.
    is_local: ClassVar[bool] = False
    # Whether every grading rerun gets a machine of its own (see fresh()).
    fresh_per_run: ClassVar[bool] = False
    # How a grading rerun here is described: in a student's feedback ("Graded from a
    # fresh run of your notebook ..."), and in the proof paragraph of a grade report.
    rerun_where: ClassVar[str] = "on a clean machine"
    rerun_proof: ClassVar[str] = ""
    # The rows of `workshop doctor` this kind cannot work without (by their names).
    doctor_needs: ClassVar[frozenset[str]] = frozenset()

    def describe(self) -> str:
        """How messages name the place (``user@host:port``, ``local``, ...)."""
        return self.spec

    def address(self) -> tuple:
        """What the transport is opened to: when it changes (a VM booted again on
        another port), a kernel opens a new transport."""
        return (self.spec,)

    @abstractmethod
    def open(self) -> Transport:
        """A connection to the target (not yet logged in: the first channel logs in)."""

    def prepare(self, progress: Progress | None = None) -> None:
        """Make the target ready before a shell starts on it (a VM boots, a
        port is looked up); ``progress(text)`` reports steps. Raises TargetError."""
        return None  # most targets are ready as they are

    def gone(self) -> bool:
        """True when the machine a shell was started on is no longer there (a VM
        that stopped, or was booted again on another port): cheap, asked before
        every cell, never boots anything."""
        return False

    def unreachable(self) -> str | None:
        """Why the machine cannot answer now although it is there (a VM whose
        process is stopped), or None; cheap: asked while a cell is silent."""
        return None

    def release(self) -> None:
        """Let go of what the target started for this kernel, at its shutdown (a VM
        restored for it stops); most targets have nothing to let go of."""
        return None

    def sealed_agent(self):
        """The agent that runs this target's checks from outside the student's reach
        (a rerun's fresh VM: vm/agent.py), or None: checks then run in a clean shell
        opened like any other (shell/clean.py)."""
        return None

    def fresh(self, progress: Progress | None = None) -> contextlib.AbstractContextManager[str]:
        """For one grading rerun: the spec of a machine of its own when
        ``fresh_per_run``, removed afterwards; else this target's own spec."""
        return contextlib.nullcontext(self.spec)

    def system_changes(self) -> tuple[list[str], list[str]] | None:
        """After a rerun's last cell: what the student changed in the system, and the
        limits their code ran into, as the machine's sealed agent saw them (None: no agent)."""
        return None

    def not_ready(self) -> tuple[str, str] | None:
        """For `workshop doctor`, without starting anything: (what is wrong, the fix)
        when the target is plainly not there yet (a VM that is not running), else None."""
        return None

    def start_hint(self) -> str:
        """For `workshop doctor`: how to get an unreachable target to answer."""
        return "start the machine and its shell access"

    def switch_note(self) -> str:
        """Said by %target when it chooses this target: what the next cell will wait for."""
        return ""

    def as_record(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name or self.spec,
            "host": None,
            "port": None,
            "user": None,
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


def _kinds() -> list[ModuleType]:
    kinds = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    order = {"local": 0, "ssh": 1}
    return [_module(kind) for kind in sorted(kinds, key=lambda k: (order.get(k, 2), k))]


def target_usage() -> str:
    """One line per kind, from the kinds' own modules."""
    return "targets: " + " | ".join(module.USAGE for module in _kinds())


def target_completions() -> list[str]:
    """Specs to offer for %target: how each kind starts (``local``, ``ssh://``,
    ``qemu:``, ...), then what each kind knows of on this machine (its VMs, say)."""
    import re

    specs = [re.match(r"[a-z]+(?::(?://)?)?", usage)[0] for usage in target_usage().removeprefix("targets: ").split(" | ")]
    for module in _kinds():
        specs += getattr(module, "completions", list)()
    return list(dict.fromkeys(specs))


def kind_class(spec: str | None) -> type[Target]:
    """The Target subclass of ``spec``'s kind, without parsing it (nothing is looked
    up); the base class for a spec of no known kind."""
    module = _module(_kind_of((spec or "").strip()))
    return getattr(module, "TARGET", Target) if module is not None else Target


def parse_target(spec: str, settings: Settings | None = None) -> Target:
    """Turn a target spec into a Target of its kind; raises TargetError saying how to fix it.

    ``settings`` are the caller's (the kernel's, the command's): the target keeps
    them, so a configured value reaches the SSH config lookup and the VM."""
    spec = spec.strip()
    module = _module(_kind_of(spec))
    if module is None:
        raise TargetError(f"unknown target '{spec}'; {target_usage()}")
    settings = settings if settings is not None else Settings()
    target = module.parse(spec, settings)
    target.settings = settings
    return target
