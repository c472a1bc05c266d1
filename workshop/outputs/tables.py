"""The class's grades as files: a CSV for a spreadsheet or an LMS, an HTML page, every result as JSON."""

from __future__ import annotations

from pathlib import Path

from . import Graded, Say, Writer


def _write_text(path: Path, text: str, *, csv: bool = False) -> None:
    # "replace": a lone surrogate a record's JSON escaped cannot stop a report
    path.write_text(text, encoding="utf-8", errors="replace", newline="" if csv else None)


def _csv(graded: Graded, path: Path, say: Say) -> None:
    from ..reports import to_csv

    _write_text(path, to_csv(graded.report), csv=True)


def _html(graded: Graded, path: Path, say: Say) -> None:
    from ..reports import to_html

    _write_text(path, to_html(graded.report))


def _json(graded: Graded, path: Path, say: Say) -> None:
    from ..reports import to_json

    _write_text(path, to_json(graded.report))


WRITERS = [
    Writer("csv", "grade", "Write a CSV: a row per student, a column per check, the total.", _csv),
    Writer("html", "grade", "Write a self-contained HTML report with per-student detail.", _html),
    Writer("json", "grade", "Write every result as JSON.", _json),
]
