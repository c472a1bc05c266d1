"""Grade-book files an LMS imports: Canvas's gradebook CSV and Moodle's grade import CSV.

Who each submission belongs to comes from a roster (``--roster CSV``, columns
``id,name`` and optionally ``email`` and ``section``) or, without one, from the
file names.  Files downloaded from Canvas ("Download Submissions") are named
``NAME_USERID_SUBMISSIONID_FILE`` (``NAME_LATE_USERID_...`` when late): the user
ID in them is the student's Canvas ID.

- Canvas: the columns of Canvas's own gradebook export, ``Student``, ``ID``,
  ``SIS User ID``, ``SIS Login ID``, ``Section``, then one column for the
  assignment; a ``Points Possible`` row first, then a row per student.  A
  roster ``id`` of digits goes into ``ID`` (the Canvas user ID), any other into
  ``SIS User ID``.  A column named ``NAME (12345)`` updates Canvas assignment
  12345; a plain name makes a new assignment.
- Moodle: an identifier column, ``Email address`` when the roster gives every
  student's email, ``ID number`` otherwise, and one grade column; at import,
  map it to "Email address" / useremail or "ID number" / useridnumber.

Beside each import file, ``NAME-flags.csv`` holds a row per flag of every
flagged student (the student, the id the import gives them, the submission,
the flag's kind, cell and message): the import itself has no place for them,
and a total earned by a copied notebook must not reach the grade book unseen.

Every text field goes through :func:`workshop.reports.csv_text`, so no name or
id from a file name starts a spreadsheet formula.

The kinds (``--lms KIND``) are writers of :mod:`workshop.outputs.lms`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkshopError
from .grading.paths import display_path
from .grading.results import Report
from .reports import csv_text

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
# Canvas "Download Submissions": name, optionally LATE, user id, submission id, the file's own name
CANVAS_FILE = re.compile(r"^(?P<name>[^_]+)_(?:LATE_)?(?P<user>\d+)_(?P<submission>\d+)(?:_|$)")
MAX_ROSTER_BYTES = 16 * 2**20


class RosterError(WorkshopError):
    """A roster that cannot be read, or submissions that cannot be matched to students."""


@dataclass(frozen=True)
class Student:
    id: str
    name: str
    email: str = ""
    section: str = ""


# ---- the roster ---------------------------------------------------------------------
def read_roster(path: Path | str) -> list[Student]:
    """The students of a roster CSV (a header row with ``id`` and ``name``)."""
    shown = display_path(path)
    try:
        data = Path(path).read_bytes()[: MAX_ROSTER_BYTES + 1]
    except OSError as exc:
        raise RosterError(f"{shown}: the roster cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(f"{shown}: over {MAX_ROSTER_BYTES // 2**20} MiB, too big to be a roster")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RosterError(f"{shown}: the roster is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        header = [h.strip().lower() for h in (csv.DictReader(io.StringIO(text, newline="")).fieldnames or [])]
    except csv.Error as exc:
        raise RosterError(f"{shown}: not a readable CSV file ({exc})") from None
    if "id" not in header or "name" not in header:
        raise RosterError(f"{shown}: the roster's first row must name the columns id and name (and optionally "
                          f"email, section); it has {', '.join(header) or 'nothing'}")
    return _students(rows, shown)


def _students(rows: list[dict], shown: str) -> list[Student]:
    students: list[Student] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, 2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(row.values()):
            continue
        if not row.get("id"):
            raise RosterError(f"{shown}: line {line} has no id")
        if row["id"] in seen:
            raise RosterError(f"{shown}: line {line} repeats the id {row['id']!r} of line {seen[row['id']]}")
        seen[row["id"]] = line
        students.append(Student(row["id"], row.get("name") or row["id"], row.get("email", ""),
                                row.get("section", "")))
    if not students:
        raise RosterError(f"{shown}: the roster lists no students")
    return students


# ---- who handed in what -----------------------------------------------------------------
def _candidates(path: Path, name: str) -> list[str]:
    """What in a submission's path may be its student's id: a Canvas user id, the name, the file stem."""
    stem = display_path(path.stem)
    found = [m["user"] for m in [CANVAS_FILE.match(stem)] if m]
    return found + [name, stem]


def match_students(paths: Sequence[Path], names: Sequence[str], roster: Sequence[Student] | None,
                   ids_from_file_names: bool = False) -> list[Student]:
    """The student of each submission, in order; RosterError names every file that matches no one
    (or the same one as another file).  Without a roster, ``ids_from_file_names`` (a grade book that
    takes its ids from file names, Canvas) needs file names as Canvas gives them."""
    if roster is None:
        students = [_from_file_name(Path(p), n) for p, n in zip(paths, names, strict=True)]
        unknown = [display_path(p) for p, s in zip(paths, students, strict=True)
                   if ids_from_file_names and not s.id.isdigit()]
        if unknown:
            raise RosterError(f"no Canvas user ID in the file name of {', '.join(unknown[:5])}"
                              f"{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}: give --roster "
                              "CSV (id,name), or grade the files as Canvas's Download Submissions names them")
        return students
    by_key: dict[str, Student] = {s.id: s for s in roster}
    by_key.update({s.email.lower(): s for s in roster if s.email})
    matched: list[Student] = []
    problems: list[str] = []
    owner: dict[str, str] = {}
    for path, name in zip(paths, names, strict=True):
        shown = display_path(path)
        student = next((by_key.get(c) or by_key.get(c.lower()) for c in _candidates(Path(path), name)
                        if by_key.get(c) or by_key.get(c.lower())), None)
        if student is None:
            problems.append(f"{shown} matches no id or email of the roster")
            continue
        if student.id in owner:
            problems.append(f"{shown} and {owner[student.id]} both belong to {student.name} ({student.id})")
        owner[student.id] = shown
        matched.append(student)
    if problems:
        raise RosterError("submissions that cannot be given to a student of the roster: " + "; ".join(problems))
    return matched


def _from_file_name(path: Path, name: str) -> Student:
    found = CANVAS_FILE.match(display_path(path.stem))
    return Student(found["user"], found["name"]) if found else Student(name, name)


# ---- the files ------------------------------------------------------------------------------
def _num(value: float) -> str:
    return f"{value:g}"


def canvas_ids(students: Sequence[Student]) -> tuple[str, list[str]]:
    """Canvas matches rows by its user ID (digits) or by SIS User ID (any other id)."""
    kinds = {s.id.isdigit() for s in students}
    column = "ID" if kinds == {True} else "SIS User ID" if kinds == {False} else "ID or SIS User ID"
    return column, [s.id for s in students]


def moodle_ids(students: Sequence[Student]) -> tuple[str, list[str]]:
    """Moodle matches rows by email address when the roster gives every student's, else by ID number."""
    if students and all(s.email for s in students):
        return "Email address", [s.email for s in students]
    return "ID number", [s.id for s in students]


def canvas_csv(report: Report, students: Sequence[Student], assignment: str) -> str:
    """Canvas's gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, the assignment."""
    missing = [s.name for s in students if not s.id]
    if missing:
        raise RosterError(f"no Canvas ID or SIS User ID for {', '.join(missing[:5])}")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CANVAS_COLUMNS, csv_text(assignment)])
    writer.writerow(["Points Possible", "", "", "", "", _num(report.reference.max_points)])
    for student, result in zip(students, report.results, strict=True):
        canvas_id, sis_id = (student.id, "") if student.id.isdigit() else ("", student.id)
        writer.writerow([csv_text(student.name), canvas_id, csv_text(sis_id), "", csv_text(student.section),
                         _num(result["total"])])
    return buf.getvalue()


def moodle_csv(report: Report, students: Sequence[Student], assignment: str) -> str:
    """Moodle's grade import: an identifier column (email address or ID number) and the grade."""
    column, ids = moodle_ids(students)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([column, csv_text(assignment)])
    for identifier, result in zip(ids, report.results, strict=True):
        writer.writerow([csv_text(identifier), _num(result["total"])])
    return buf.getvalue()


FLAG_COLUMNS = ["student", "submission", "kind", "cell", "message"]


def flags_path(path: Path | str) -> Path:
    """Where the flags of a grade import go: beside it, ``NAME-flags.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-flags{path.suffix or '.csv'}")


def flags_csv(report: Report, students: Sequence[Student], identifiers: tuple[str, list[str]]) -> str:
    """A row per flag of every flagged student, with the id the grade import gives that student:
    an instructor who only opens grade files sees which totals rest on a flagged notebook, and why."""
    column, ids = identifiers
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*FLAG_COLUMNS[:1], column, *FLAG_COLUMNS[1:]])
    for student, identifier, result in zip(students, ids, report.results, strict=True):
        for flag in result["flags"]:
            writer.writerow([csv_text(text) for text in (student.name, identifier, str(result["student"]),
                                                         str(flag.get("kind", "")), str(flag.get("cell") or ""),
                                                         str(flag.get("message", "")))])
    return buf.getvalue()


def flagged(report: Report) -> int:
    """How many students have at least one flag."""
    return sum(1 for result in report.results if result["flags"])


def write_lms(path: Path | str, report: Report, students: Sequence[Student], assignment: str,
              render: Callable[[Report, Sequence[Student], str], str],
              identifiers: Callable[[Sequence[Student]], tuple[str, list[str]]]) -> Path:
    """Write a grade import to ``path`` (``render``: its text; ``identifiers``: the column the LMS
    matches rows by, and each student's value) and its flags beside it; the flags file's path."""
    Path(path).write_text(render(report, students, assignment), encoding="utf-8", newline="")
    flags = flags_path(path)  # written when no one is flagged too: a stale one must not stay
    flags.write_text(flags_csv(report, students, identifiers(students)), encoding="utf-8", newline="")
    return flags


__all__ = ["CANVAS_COLUMNS", "RosterError", "Student", "canvas_csv", "canvas_ids", "flagged", "flags_csv",
           "flags_path", "match_students", "moodle_csv", "moodle_ids", "read_roster", "write_lms"]
