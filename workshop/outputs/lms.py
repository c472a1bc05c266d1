"""Grade-book imports of LMSs, ``--lms KIND FILE`` (see :mod:`workshop.lms`): each kind's file, and
beside it ``NAME-flags.csv``, the flags the import has no place for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import Graded, Group, Say, Writer


def _grade_book(kind: str, render: str, identifiers: str, *, ids_from_file_names: bool = False) -> Writer:
    """The writer of one LMS's import; ``render`` and ``identifiers`` name functions of workshop.lms."""

    def write(graded: Graded, path: Path, say: Say) -> None:
        from .. import lms
        from ..reports import terminal_text

        flags = lms.write_lms(path, graded.report, graded.students or [], graded.assignment,
                              getattr(lms, render), getattr(lms, identifiers))
        say(f"wrote the {kind} grade import {terminal_text(str(path))}")
        say(_flagged_line(graded.report, kind, flags))

    def beside(path: Path) -> tuple[str, Path]:
        from ..lms import flags_path

        return f"the flags of --lms {kind} {path}", flags_path(path)

    return Writer(kind, "grade", f"the {kind} grade import", write, group="lms", students="--lms files",
                  needs_ids=True, ids_from_file_names=ids_from_file_names, totals="an LMS total", beside=beside)


def _flagged_line(report, kind: str, flags: Path) -> str:
    """One line: how many students are flagged, and where their flags are."""
    from ..lms import flagged
    from ..reports import terminal_text

    count, total = flagged(report), len(report.results)
    where = terminal_text(str(flags))
    if not count:
        return f"no student is flagged: {where} lists no flag"
    kinds = terminal_text(", ".join(sorted({f["kind"] for r in report.results for f in r["flags"]})))
    return (f"[yellow]{count} of {total} students flagged ({kinds}): the {kind} import gives them the points "
            f"their notebooks earned; what was flagged and why is in {where}[/yellow]")


def _manual_points(graded: Graded, written: Sequence[Writer], say: Say) -> None:
    """The points graded by hand are in no LMS total: said once for all the imports."""
    manual = graded.report.reference.manual_points
    if manual:
        say(f"[yellow]the {' and '.join(w.name for w in written)} totals leave out the {manual:g} points to "
            "grade by hand[/yellow]")


# Canvas matches rows by its user ID, which Canvas's "Download Submissions" puts in each file name.
WRITERS = [
    _grade_book("canvas", "canvas_csv", "canvas_ids", ids_from_file_names=True),
    _grade_book("moodle", "moodle_csv", "moodle_ids"),
]
GROUPS = [Group("lms", "Write the grade-book import file of an LMS (once per kind), and beside it NAME-flags.csv: "
                       "a row per flag of every flagged student.", _manual_points)]
