"""One feedback page per student (see :mod:`workshop.feedback`)."""

from __future__ import annotations

from pathlib import Path

from . import Graded, Say, Writer


def _feedback(graded: Graded, folder: Path, say: Say) -> None:
    from ..feedback import write_feedback
    from ..reports import terminal_text

    students = graded.students
    titles = [s.name for s in students] if students else None
    files = [s.id for s in students] if students else None
    paths = write_feedback(graded.report, folder, graded.assignment, titles=titles, files=files)
    say(f"wrote {len(paths)} feedback pages to {terminal_text(str(folder))}")


WRITERS = [
    Writer("feedback", "grade", "Write one feedback page per student (HTML) into this folder.", _feedback,
           folder=True, students="--feedback pages"),
]
