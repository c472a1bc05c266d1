"""JUnit XML of headless runs (see :func:`workshop.run_reports.junit_xml`)."""

from __future__ import annotations

from pathlib import Path

from . import Say, Writer


def _junit(results: list, path: Path, say: Say) -> None:
    from ..run_reports import junit_xml

    path.write_text(junit_xml(results), encoding="utf-8")


WRITERS = [Writer("junit", "run", "Write JUnit XML here: one test case per check.", _junit)]
