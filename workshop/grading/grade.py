"""Grading one executed notebook against a reference notebook (pure: notebook data in, plain data out).

Which checks exist, their names and their points come from the instructor's
reference notebook (cells matched by id); results come from each submission's
records.  ``%expect`` checks are evaluated again on the outputs saved in the
submission; ``%%check`` results are taken from the record when the script that
ran is the reference's own (same digest).  A submission cannot pass by deleting
or editing checks, and these are flagged:

- ``unreadable``: the file is not a notebook for this kernel
- ``cell-missing``: a cell with checks was deleted
- ``record-missing``: a cell with checks has no record (not run, or outputs cleared)
- ``record-moved``: the record belongs to another cell (it names that cell, or
  the code that ran is another cell's)
- ``record-duplicated`` / ``cell-id-duplicated``: two cells carry the same run's
  record, or the same id
- ``record-unmatched``: the record names no cell (nbconvert and papermill send
  no cell id) and the code that ran is not the cell's
- ``edited-after-run``: the cell's source changed after it ran (for the instructor)
- ``output-edited``: the shown stdout/stderr differ from the record's digests
- ``output-truncated-by-client``: the shown output is a verified prefix of what
  ran (a Jupyter server's rate limit dropped the rest); checks count from the record
- ``framing-forged``: the kernel saw a forged end of a cell while this one ran,
  so its output may hold another cell's
- ``check-removed`` / ``check-edited``: a check of the reference is missing
  from the cell, or its script differs
- ``locked-changed``: the source of a locked cell (``metadata.workshop.locked``
  or nbgrader's ``editable: false``) differs from the reference
- ``system-tampered``: in a rerun, the VM's agent saw the student's code change
  what checks depend on (a program, a library, ``/etc/ld.so.preload``, a mount
  over ``/usr`` or ``/proc``...) before this cell's checks ran, or after the last
  cell (then for the whole submission); its message says what was changed
- ``edited-outside-solution``: the text of a code task outside its solution
  regions (a ``%%chroot`` line above the region, say) differs from the
  student copy's; blank lines and spaces at the ends of lines do not count
- ``sessions``: checked cells ran in more than one kernel session
- ``out-of-order``: checked cells ran in another order than the notebook's

Checks of a cell flagged ``record-missing``, ``record-moved``,
``record-duplicated``, ``cell-id-duplicated``, ``record-unmatched``,
``output-edited``, ``framing-forged``, ``system-tampered`` or ``locked-changed`` earn no points,
and neither do the checks of a task flagged ``edited-outside-solution`` (its
hidden cells' too); the other flags are for the instructor.

What a result holds is written down in :mod:`workshop.grading.results`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..checks import describe_changes, evaluate, without_hidden_checks
from ..errors import GradingError
from ..records import RecordCheck, cell_record, cell_streams, classify_streams, multiline_text, sha256_text
from ..text import tail
from .copies import run_evidence
from .notebook import check_notebook, parse_notebook_json, read_notebook_json
from .paths import display_path
from .reference import RefCell, RefCheck, Reference, outside_edit, student_code
from .results import (
    FAILED,
    INVALID,
    MISSING,
    PASSED,
    CheckEntry,
    Flag,
    GradeResult,
    add_flag,
    check_entry,
    needs_rerun,
)

TAIL = 3000  # characters of a failing cell's output kept for the report


def grade_submission(ref: Reference, path: Path | str, student: str | None = None, *,
                     score_hidden: bool = False, notebook: dict | str | bytes | None = None,
                     name: str | None = None) -> GradeResult:
    """Grade one executed notebook; the result is plain data (JSON, pickle).

    Hidden checks are not in a student's copy, so a student's own run cannot
    have run them: they are entered as ``needs-rerun`` (no points, and saying
    why) unless ``score_hidden``, for a run the grader made itself with the
    reference's checks put back (a rerun, or ``workshop run`` of the reference).

    ``notebook``: the notebook held in memory, parsed or as its JSON text (``path``
    names it, and is not read); ``name``:
    what the result and its messages call the file, when ``path`` is a copy
    (a rerun's executed notebook is named after the submission).

    A malformed notebook or record scores nothing and says so; it never stops
    the grading of the others."""
    shown = name or display_path(path)
    try:
        return _grade_submission(ref, Path(path), student, score_hidden, notebook, name)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError, RecursionError) as exc:
        why = " ".join(str(exc).split())[:200]
        return _unreadable(ref, Path(path), student, f"{shown}: the notebook or one of its records "
                                                     f"is malformed ({type(exc).__name__}: {why})", name)


def _empty_result(ref: Reference, path: Path, student: str | None, error: str | None = None,
                  name: str | None = None) -> GradeResult:
    return {
        "student": student or display_path(path.stem),
        "path": name or display_path(path),
        "error": error,
        "total": 0.0,
        "max": ref.max_points,
        "checks": {},
        "flags": [],
        "cells": {},
        "answers": {},  # the student's own text of each task
        "manual": {t.label: t.manual_points for t in ref.tasks if t.manual_points},  # points to give by hand
    }


def _unreadable(ref: Reference, path: Path, student: str | None, message: str, name: str | None = None) -> GradeResult:
    result = _empty_result(ref, path, student, message, name)
    add_flag(result["flags"], "unreadable", None, message)
    for check in ref.checks:
        result["checks"][check.key] = check_entry(check, False, "the notebook could not be read", MISSING)
    return result


def _grade_submission(ref: Reference, path: Path, student: str | None, score_hidden: bool,
                      notebook: dict | str | bytes | None, name: str | None) -> GradeResult:
    try:
        if notebook is None:
            nb = read_notebook_json(path, name=name)
        elif isinstance(notebook, (str, bytes)):
            nb = parse_notebook_json(notebook, name or display_path(path))
        else:
            nb = check_notebook(notebook, name or str(path))
    except GradingError as exc:
        return _unreadable(ref, path, student, str(exc), name)
    result = _empty_result(ref, path, student, None, name)
    result["evidence"] = run_evidence(nb)
    result["answers"] = task_answers(ref, nb)
    by_id = {cell.get("id"): cell for cell in nb["cells"] if cell.get("cell_type") == "code" and cell.get("id")}
    positions = {cell.get("id"): i for i, cell in enumerate(nb["cells"])}
    submitted = _Submitted.of(nb)
    ran: list[tuple[int, str, dict]] = []  # (position in submission, label, record) of checked cells
    for ref_cell in ref.cells:
        if ref_cell.hidden and not score_hidden:  # not in the student's copy: nothing to look at
            result["checks"].update((check.key, needs_rerun(check)) for check in ref_cell.checks)
            continue
        cell = by_id.get(ref_cell.id)
        if cell is None:
            add_flag(result["flags"], "cell-missing", ref_cell.name, "the cell was deleted")
            for check in ref_cell.checks:
                result["checks"][check.key] = check_entry(check, False, "the cell was deleted", MISSING)
            continue
        record = _grade_cell(result, ref_cell, cell, submitted, score_hidden)
        if record is not None:
            ran.append((positions.get(ref_cell.id, 0), ref_cell.name, record))
    _order_flags(ran, result["flags"])
    _outside_solution_flags(ref, nb, result)
    result["total"] = sum(c["earned"] for c in result["checks"].values())
    return result


# ---- a task edited outside its solution regions ---------------------------------
def _outside_solution_flags(ref: Reference, nb: dict, result: GradeResult) -> None:
    """Flag each code task whose text outside its solution regions is not the student
    copy's (the lines the student was to leave, a ``%%chroot`` say); its checks earn nothing."""
    by_id = {cell.get("id"): cell for cell in nb["cells"] if cell.get("cell_type") == "code" and cell.get("id")}
    checks = {check.key: check for check in ref.checks}
    names = {cell.id: cell.name for cell in ref.cells}
    for task in ref.tasks:
        cell = by_id.get(task.cell_id)
        edit = outside_edit(task.frame, multiline_text(cell.get("source"))) if cell is not None else None
        if edit is None:
            continue
        add_flag(result["flags"], "edited-outside-solution", names.get(task.cell_id) or task.label,
              f"{edit}: only the solution region is the student's to write")
        for key in task.checks:
            result["checks"][key] = check_entry(checks[key], False, "the task was edited outside its solution "
                                                                     "region", INVALID)


@dataclass
class _Submitted:
    """What ties a record to its cell, across one submission's code cells."""

    sources: dict[str, set[str]]  # digest of a cell's source -> the ids of the cells with that source
    ids: dict[str, int]  # cell id -> how many code cells carry it
    runs: dict[tuple, list[str]]  # (kernel session, execution count) -> the ids of the cells whose record it is

    @classmethod
    def of(cls, nb: dict) -> _Submitted:
        sources: dict[str, set[str]] = {}
        ids: dict[str, int] = {}
        runs: dict[tuple, list[str]] = {}
        for cell in nb["cells"]:
            if cell.get("cell_type") != "code":
                continue
            cell_id = str(cell.get("id") or "")
            ids[cell_id] = ids.get(cell_id, 0) + 1
            sources.setdefault(sha256_text(multiline_text(cell.get("source"))), set()).add(cell_id)
            record = cell_record(cell)
            if record and record.get("session") and record.get("execution_count") is not None:
                runs.setdefault((record["session"], record["execution_count"]), []).append(cell_id)
        return cls(sources, ids, runs)


def _grade_cell(result: GradeResult, ref_cell: RefCell, cell: dict, submitted: _Submitted,
                score_hidden: bool = False) -> dict | None:
    """Flag one submitted cell and enter its checks' results; the record its checks were graded on."""
    flags: list[Flag] = result["flags"]
    source = multiline_text(cell.get("source"))
    record = cell_record(cell)
    zero = _locked_changed(flags, ref_cell, source, record)  # why this cell's checks earn nothing
    if not ref_cell.checks:
        return None
    if record is None:
        add_flag(flags, "record-missing", ref_cell.name, "no record: the cell was not run or its outputs were cleared")
        zero = zero or "the cell has no record (not run?)"
        stdout = stderr = ""
        cut = False
    else:
        stdout, stderr = cell_streams(cell)
        untrusted, cut = _untrusted_record(flags, ref_cell, record, stdout, stderr)  # flags even when zero is set
        zero = _record_elsewhere(flags, ref_cell, source, record, submitted) or zero or untrusted
    recorded = {c.get("id"): c for c in (record or {}).get("checks", []) if isinstance(c, dict)}
    failing = False
    for check in ref_cell.checks:
        if check.hidden and not score_hidden:
            result["checks"][check.key] = needs_rerun(check)
            continue
        entry = _grade_check(flags, check, record, recorded.get(check.id), zero, None if cut else (stdout, stderr))
        failing = failing or not entry["passed"]
        result["checks"][check.key] = entry
    if failing:
        result["cells"][ref_cell.label] = {
            "name": ref_cell.name,
            "exit_status": record.get("exit_status") if record else None,
            "stdout": tail(stdout, TAIL),
            "stderr": tail(stderr, TAIL),
            "source": tail(source, TAIL),
        }
    return record


def _locked_changed(flags: list[Flag], ref_cell: RefCell, source: str, record: dict | None) -> str | None:
    """Flag a locked cell whose source (shown, or as it ran) is not the reference's."""
    if not ref_cell.locked:
        return None
    run_digest = record.get("source_digest") if record else None
    # the student copy leaves out its hidden checks; a rerun puts them back
    allowed = {ref_cell.source, without_hidden_checks(ref_cell.source)}
    if source not in allowed or (run_digest and run_digest not in {sha256_text(text) for text in allowed}):
        add_flag(flags, "locked-changed", ref_cell.name, "the source of a locked cell was changed")
        return "the locked cell was changed"
    return None


def _record_elsewhere(flags: list[Flag], ref_cell: RefCell, source: str, record: dict,
                      submitted: _Submitted) -> str | None:
    """Flag a record that may be another cell's; why the cell earns nothing, or None.

    A record's cell id is null when the client sent none (nbconvert, papermill),
    and a student can copy or forge it; the digest of the source that ran is
    what ties a record to its cell then.  A record of another cell's code, of
    no cell's code when it names none, carried by two cells, or a cell id two
    cells carry, earns nothing."""
    name = ref_cell.name
    if submitted.ids.get(ref_cell.id, 0) > 1:
        add_flag(flags, "cell-id-duplicated", name, f"{submitted.ids[ref_cell.id]} cells carry the id {ref_cell.id}")
        return "several cells carry this cell's id, so which one ran is unknown"
    copies = submitted.runs.get((record.get("session"), record.get("execution_count")), [])
    if len(copies) > 1:
        add_flag(flags, "record-duplicated", name, f"the same run's record is in {len(copies)} cells")
        return "the record is also in another cell: one of them is a copy"
    ran = record.get("source_digest")
    if not isinstance(ran, str) or not ran or ran == sha256_text(source):
        return None
    others = sorted(i for i in submitted.sources.get(ran, set()) if i != ref_cell.id)
    if others:
        add_flag(flags, "record-moved", name, f"the record is of the code of cell id {others[0]}")
        return "the record is of another cell's code"
    if not record.get("cell_id"):
        add_flag(flags, "record-unmatched", name, "the record names no cell and its code is not this cell's")
        return "the record cannot be tied to this cell"
    add_flag(flags, "edited-after-run", name, "the cell's source was changed after it ran")
    return None


def _untrusted_record(flags: list[Flag], ref_cell: RefCell, record: dict, stdout: str,
                      stderr: str) -> tuple[str | None, bool]:
    """Flag a record of another cell and shown output that is not what ran; why nothing is earned,
    and whether a client kept only a verified prefix of the output (the record's results count)."""
    label = ref_cell.name
    zero = None
    if record.get("cell_id") and record.get("cell_id") != ref_cell.id:
        add_flag(flags, "record-moved", label, f"the record belongs to cell {record.get('cell_id')}")
        zero = "the record belongs to another cell"
    framing = record.get("framing")
    if framing:  # the kernel saw a forged end of a cell: this cell's output may be another's
        add_flag(flags, "framing-forged", label, f"the kernel reports: {framing}")
        zero = zero or f"the cell's framing was tampered with ({framing})"
    tampered = record.get("tampered")
    if tampered:  # a sealed VM's agent saw the system changed before this cell's checks ran
        changes = [str(c) for c in tampered] if isinstance(tampered, list) else [str(tampered)]
        add_flag(flags, "system-tampered", label, "; ".join(changes[:5]) + (" …" if len(changes) > 5 else ""))
        zero = zero or describe_changes(changes)
    verdicts = classify_streams(record, stdout, stderr)
    edited = [name for name, verdict in verdicts.items() if verdict.kind == "edited"]
    cut = [verdict.describe(name) for name, verdict in verdicts.items() if verdict.kind == "truncated"]
    if edited:
        add_flag(flags, "output-edited", label, f"shown {' and '.join(edited)} differ from the record")
        zero = zero or f"the shown {' and '.join(edited)} was edited after the run"
    elif cut:  # not the student's doing: a client (a Jupyter server's rate limit) dropped output
        add_flag(flags, "output-truncated-by-client", label, "; ".join(cut) + "; checks graded from the record")
    return zero, bool(cut) and not edited


def _grade_check(flags: list[Flag], check: RefCheck, record: dict | None, got: RecordCheck | None, zero: str | None,
                 streams: tuple[str, str] | None) -> CheckEntry:
    """One check's entry: evaluated again (%expect) or taken from the record (%%check, same script;
    %expect too when ``streams`` is None: the saved output is only a verified prefix)."""
    if got is None and record is not None:
        add_flag(flags, "check-removed", check.cell, f"the check '{check.name}' is not in the cell's record")
    if zero:
        return check_entry(check, False, zero, INVALID)
    if check.kind == "expect" and streams is not None:  # record is set: a missing record means zero
        passed, message, shown = evaluate(check.expectation, int(record.get("exit_status", -1)), *streams)
        return check_entry(check, passed, message, PASSED if passed else FAILED, shown)
    if got is None:
        return check_entry(check, False, "the check did not run (removed from the cell?)", MISSING)
    if check.kind == "check" and got.get("digest") != check.digest:
        add_flag(flags, "check-edited", check.cell, f"the script of check '{check.name}' was changed")
        return check_entry(check, False, "the check script differs from the reference", INVALID)
    passed = bool(got.get("passed"))
    return check_entry(check, passed, str(got.get("message") or ""), PASSED if passed else FAILED,
                        str(got.get("output") or got.get("got") or ""))


def _order_flags(ran: list[tuple[int, str, dict]], flags: list[Flag]) -> None:
    sessions = {r.get("session") for _, _, r in ran}
    if len(sessions) > 1:
        add_flag(flags, "sessions", None,
              f"checked cells ran in {len(sessions)} different kernel sessions (the kernel was restarted between them)")
    ran = sorted(ran, key=lambda item: item[0])
    late = []
    for (_, label_a, a), (_, label_b, b) in zip(ran, ran[1:], strict=False):
        if a.get("session") == b.get("session") and (a.get("execution_count") or 0) >= (b.get("execution_count") or 0):
            late.append(f"{label_a} (#{a.get('execution_count')}) ran after {label_b} (#{b.get('execution_count')})")
    if late:
        add_flag(flags, "out-of-order", None, "cells ran out of order: " + "; ".join(late[:5]))


# ---- what the student wrote ----------------------------------------------------
ANSWER_KEEP = 20000  # characters of a task's text kept for the feedback page


def task_answers(ref: Reference, nb: dict) -> dict[str, str | None]:
    """The student's own text of each task (None: the cell was deleted)."""
    by_id = {cell.get("id"): cell for cell in nb["cells"] if cell.get("id")}
    answers: dict[str, str | None] = {}
    for task in ref.tasks:
        cell = by_id.get(task.cell_id)
        if cell is None:
            answers[task.label] = None
            continue
        text = multiline_text(cell.get("source"))
        answers[task.label] = tail(student_code(text) if task.kind == "code" else text, ANSWER_KEEP)
    return answers


__all__ = ["TAIL", "grade_submission", "task_answers"]
