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

Every text field goes through :func:`workshop.reports.csv_text`, so no name or
id from a file name starts a spreadsheet formula.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkshopError
from .grading import Report, display_path
from .reports import csv_text

LMS_KINDS = ("canvas", "moodle")
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
                   canvas: bool = False) -> list[Student]:
    """The student of each submission, in order; RosterError names every file that matches no one
    (or the same one as another file).  Without a roster, Canvas needs file names as Canvas gives them."""
    if roster is None:
        students = [_from_file_name(Path(p), n) for p, n in zip(paths, names, strict=True)]
        unknown = [display_path(p) for p, s in zip(paths, students, strict=True) if canvas and not s.id.isdigit()]
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
    by_email = bool(students) and all(s.email for s in students)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["Email address" if by_email else "ID number", csv_text(assignment)])
    for student, result in zip(students, report.results, strict=True):
        writer.writerow([csv_text(student.email if by_email else student.id), _num(result["total"])])
    return buf.getvalue()


def write_lms(kind: str, path: Path | str, report: Report, students: Sequence[Student], assignment: str) -> None:
    render = {"canvas": canvas_csv, "moodle": moodle_csv}[kind]
    Path(path).write_text(render(report, students, assignment), encoding="utf-8", newline="")


__all__ = ["CANVAS_COLUMNS", "LMS_KINDS", "RosterError", "Student", "canvas_csv", "match_students", "moodle_csv",
           "read_roster", "write_lms"]
