"""What `workshop grade` and `workshop run` write from their results: one registry of writers.

Each writer is a :class:`Writer` in a module of this package, listed in
:data:`WRITER_MODULES`; the command line's options are made from the registry
(``--NAME PATH``, or ``--GROUP NAME PATH`` for writers offered as kinds of one
option, as ``--lms canvas FILE``), and so are the checks made before anything
is graded: two outputs on one file, a roster no output uses, totals that would
count unjudged hidden checks as failed, and each writer's own.  A new output is
a module with a ``WRITERS`` list (and ``GROUPS``, when it brings an option of
kinds), and its name in :data:`WRITER_MODULES`.

A writer module imports nothing heavy at its top: ``workshop --help`` reads
the registry, and the libraries an output needs are loaded when it is written.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WorkshopError

# The modules of the writers, in the order of their options in --help and of the writing.
WRITER_MODULES = ("tables", "feedback", "lms", "junit", "gradescope")

Say = Callable[[str], None]  # prints a line (rich markup) on the grader's terminal


class OutputError(WorkshopError):
    """An output that cannot be written for what was asked, said before anything is graded."""


class OutputUsageError(OutputError):
    """Options that contradict each other (two outputs on one file, a roster no output uses)."""


@dataclass(frozen=True)
class Plan:
    """What a grade command was asked, as the writers' checks see it before anything runs."""

    reference: Path
    submissions: list[Path]  # the notebooks given, folders searched
    rerun: bool
    requested: list[tuple[Writer, Path]]
    roster: Path | None = None


@dataclass
class Graded:
    """What a grade writer writes from."""

    report: Any  # workshop.grading.results.Report
    students: list | None  # workshop.lms.Student of each submission, when a writer needs them
    assignment: str  # the assignment's name (--assignment, or the reference's file name)


@dataclass(frozen=True)
class Writer:
    """One output: ``write(results, path, say)`` writes it, ``results`` being a :class:`Graded`
    for ``grade`` and the list of NotebookResult for ``run``."""

    name: str  # --NAME PATH, or --GROUP NAME PATH
    command: str  # "grade" or "run"
    help: str
    write: Callable[[Any, Path, Say], None]
    folder: bool = False  # PATH is a folder it fills, not a file
    group: str | None = None  # offered as a kind of --GROUP, given once per kind
    students: str = ""  # it names students by a roster's ids and names: what the --roster message calls it
    needs_ids: bool = False  # it needs each student's id, from a roster or else from the file names
    ids_from_file_names: bool = False  # without a roster, every file name must carry the student's id
    totals: str = ""  # it holds totals, which need every check judged: what it calls one
    beside: Callable[[Path], tuple[str, Path]] | None = None  # another file it writes: (what, where)
    check: Callable[[Plan], str | None] | None = None  # why it cannot be written for a plan, or None

    @property
    def option(self) -> str:
        return f"--{self.group} {self.name}" if self.group else f"--{self.name}"


@dataclass(frozen=True)
class Group:
    """An option whose value names one of several writers: ``--lms KIND FILE``."""

    name: str
    help: str
    # after all its writers wrote: more to say about them together
    finish: Callable[[Graded, Sequence[Writer], Say], None] | None = None


@dataclass
class _Registry:
    writers: list[Writer] = field(default_factory=list)
    groups: dict[str, Group] = field(default_factory=dict)


_REGISTRY: _Registry | None = None


def _registry() -> _Registry:
    global _REGISTRY
    if _REGISTRY is None:
        registry = _Registry()
        for name in WRITER_MODULES:
            module = importlib.import_module(f"{__name__}.{name}")
            registry.writers += module.WRITERS
            registry.groups.update((group.name, group) for group in getattr(module, "GROUPS", ()))
        _REGISTRY = registry
    return _REGISTRY


def writers(command: str) -> list[Writer]:
    """The writers of ``command``, in registry order."""
    return [w for w in _registry().writers if w.command == command]


def options(command: str) -> list[tuple[str, Writer | Group]]:
    """The options of ``command``'s outputs, in order: ``(name, writer)`` for ``--NAME PATH``,
    ``(name, group)`` for ``--GROUP KIND PATH``."""
    found: list[tuple[str, Writer | Group]] = []
    for writer in writers(command):
        if writer.group is None:
            found.append((writer.name, writer))
        elif writer.group not in [name for name, _ in found]:
            found.append((writer.group, _registry().groups[writer.group]))
    return found


def kinds(command: str, group: str) -> list[str]:
    return [w.name for w in writers(command) if w.group == group]


def requested(command: str, values: dict[str, Any]) -> list[tuple[Writer, Path]]:
    """The outputs asked for, from the options' values (by option name; a group's value is a
    sequence of ``(kind, path)``): in the order of the options, a group's kinds as given."""
    by_name = {(w.group, w.name): w for w in writers(command)}
    asked: list[tuple[Writer, Path]] = []
    for name, what in options(command):
        value = values.get(name)
        if not value:
            continue
        if isinstance(what, Group):
            asked += [(by_name[(name, kind)], Path(path)) for kind, path in value]
        else:
            asked.append((what, Path(value)))
    return asked


def check_options(asked: Sequence[tuple[Writer, Path]], roster: Path | None) -> None:
    """Refuse, before anything runs, options that contradict each other (OutputUsageError)."""
    if roster and not any(w.students for w, _ in asked):
        named = list(dict.fromkeys(w.students for w in _registry().writers if w.students))
        raise OutputUsageError(f"--roster names the students of {' and '.join(named)}; give one of them")
    given = {path.resolve(): path for _, path in asked}
    for writer, path in asked:
        if writer.beside is None:
            continue
        what, where = writer.beside(path)
        clash = given.get(where.resolve())
        if clash:
            raise OutputUsageError(f"{what} go to {where}, which is also the output {clash}: choose another name")


def check_plan(plan: Plan, hidden_checks: Callable[[], bool]) -> None:
    """Refuse, before anything is graded, outputs that cannot be written for ``plan`` (OutputError).
    ``hidden_checks()``: whether the reference has hidden checks (read only when it matters)."""
    totals = [w for w, _ in plan.requested if w.totals]
    if totals and not plan.rerun and hidden_checks():
        raise OutputError(f"the reference has hidden checks, which only --rerun scores: {totals[0].totals} "
                          "without them would count them as failed; add --rerun --target SPEC")
    kinds_given = [w.option for w, _ in plan.requested if w.group]
    twice = sorted({option for option in kinds_given if kinds_given.count(option) > 1})
    if twice:
        raise OutputError(f"{twice[0]} is given twice: give each kind once")
    for writer, _ in plan.requested:
        why = writer.check(plan) if writer.check else None
        if why:
            raise OutputError(why)


def write_all(asked: Sequence[tuple[Writer, Path]], results: Any, say: Say = lambda line: None) -> None:
    """Write every output asked for, in the order asked; then each group's closing words."""
    done: dict[str, list[Writer]] = {}
    for writer, path in asked:
        writer.write(results, path, say)
        if writer.group:
            done.setdefault(writer.group, []).append(writer)
    for name, group_writers in done.items():
        group = _registry().groups[name]
        if group.finish:
            group.finish(results, group_writers, say)


__all__ = ["WRITER_MODULES", "Graded", "Group", "OutputError", "OutputUsageError", "Plan", "Say", "Writer",
           "check_options", "check_plan", "kinds", "options", "requested", "write_all", "writers"]
