"""The grader's wire formats: what a grade result, a check entry, a flag and a class's
report hold.  They are TypedDicts, so results stay plain JSON (stored, pickled to
workers, written by every output) while their keys are written down in one place.

Statuses of a check entry: ``passed``, ``failed``, ``missing`` (did not run, or
the cell is gone), ``invalid`` (the record cannot be trusted: see the flags) and
``needs-rerun`` (a hidden check, judged only by a rerun)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from .reference import RefCheck, Reference

PASSED, FAILED, MISSING, INVALID = "passed", "failed", "missing", "invalid"
NEEDS_RERUN = "needs-rerun"


class CheckEntry(TypedDict):
    """One check's result for one submission."""

    passed: bool
    status: str  # one of the statuses above
    earned: float
    points: float
    message: str  # why it failed, in words ("" when it passed)
    expected: str
    got: str
    hidden: bool  # a hidden check: feedback pages show only whether it passed


class _FlagKeys(TypedDict):
    kind: str  # "record-missing", "output-edited", "replay"...: the list is in workshop.grading.grade
    cell: str | None  # the cell it is about ("cell 3 (id 1f0c2a9e)"), or None for the whole notebook
    message: str  # for the instructor


class Flag(_FlagKeys, total=False):
    """Something about a submission a person should look at."""

    for_student: str  # what the student's own page says instead of ``message`` (which names others)
    others: list[str]  # the other submissions it names
    similarity: float  # for same-outputs: how alike the two runs are


class FailedCell(TypedDict):
    """What a failing cell showed, cut to its end, for the report."""

    name: str
    exit_status: int | None
    stdout: str
    stderr: str
    source: str


class _EvidenceKeys(TypedDict):
    sessions: list[str]
    records: list[str]
    outputs: dict[str, str]
    sources: str
    sequence: str


class Evidence(_EvidenceKeys, total=False):
    """What ties a submission to the run that made it (see :func:`workshop.grading.copies.run_evidence`)."""

    rerun_outputs: dict[str, str]  # the outputs of its rerun: which cells print something new on every run


class _ResultKeys(TypedDict):
    student: str
    path: str
    error: str | None  # why the notebook could not be graded at all
    total: float
    max: float
    checks: dict[str, CheckEntry]  # by the reference's check key ("cell 3:exit 0")
    flags: list[Flag]
    cells: dict[str, FailedCell]  # the failing cells, by label
    answers: dict[str, str | None]  # the student's own text of each task (None: deleted)
    manual: dict[str, float]  # the points each task gets by hand


class GradeResult(_ResultKeys, total=False):
    """One submission's grade."""

    evidence: Evidence
    rerun: bool  # graded from a rerun
    rerun_target: str | None


class SimilarPair(TypedDict):
    """Two submissions too alike to be two runs, for the report."""

    students: list[str]
    paths: list[str | None]
    similarity: float
    why: str


def add_flag(flags: list[Flag], kind: str, cell: str | None, message: str, for_student: str | None = None,
             **extra) -> Flag:
    """Append a flag to ``flags``; ``for_student``: what a student's own feedback page says instead of
    ``message``, when the message is for instructors only (it names other students)."""
    flag: Flag = {"kind": kind, "cell": cell, "message": message}
    if for_student:
        flag["for_student"] = for_student
    flag.update(extra)  # type: ignore[typeddict-item]
    flags.append(flag)
    return flag


def check_entry(check: RefCheck, passed: bool, message: str, status: str, got: str = "") -> CheckEntry:
    return {
        "passed": passed,
        "status": status,
        "earned": check.points if passed else 0.0,
        "points": check.points,
        "message": message,
        "expected": check.expectation.describe() if check.expectation else "the check script passes",
        "got": got,
        "hidden": check.hidden,
    }


def needs_rerun(check: RefCheck) -> CheckEntry:
    """A hidden check graded from a student's own run: not judged, and saying why."""
    return check_entry(check, False, "a hidden check: scored only when the submission runs again "
                                     "(workshop grade --rerun)", NEEDS_RERUN)


@dataclass
class Report:
    """The results of many submissions against one reference (what reports render)."""

    reference: Reference
    results: list[GradeResult]
    rerun_target: str | None = None  # where the submissions ran again, for reruns
    pairs: list[SimilarPair] = field(default_factory=list)  # submissions too alike to be two runs: similarity, why

    def as_json(self) -> dict:
        return {
            "reference": str(self.reference.path),
            "rerun_target": self.rerun_target,
            "max_points": self.reference.max_points,
            "checks": [
                {"key": c.key, "cell_id": c.cell_id, "cell": c.label, "kind": c.kind, "name": c.name,
                 "points": c.points, "hidden": c.hidden}
                for c in self.reference.checks
            ],
            "tasks": [{"cell_id": t.cell_id, "label": t.label, "kind": t.kind, "checks": t.checks,
                       "manual_points": t.manual_points} for t in self.reference.tasks],
            "submissions": self.results,
            "similar_pairs": self.pairs,
        }


__all__ = ["FAILED", "INVALID", "MISSING", "NEEDS_RERUN", "PASSED", "CheckEntry", "Evidence", "FailedCell", "Flag",
           "GradeResult", "Report", "SimilarPair", "add_flag", "check_entry", "needs_rerun"]
