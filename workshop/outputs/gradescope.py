"""Gradescope's autograder results, ``--gradescope results.json``.

A Gradescope autograder grades one submission (``/autograder/submission``) and
leaves its result in ``/autograder/results/results.json``: the ``score``, and a
test per check with its ``name``, ``score``, ``max_score``, ``status``,
``output`` and ``visibility``.  Hidden checks are ``hidden`` tests (the student
sees them in the score only), and a visible check's output that quotes a line of
a hidden check is withheld, as on feedback pages.  The flags go into the
top-level ``output``, in the words a student's own feedback page uses.  Points
graded by hand are left to Gradescope's manual grading.

In ``run_autograder``::

    workshop grade /autograder/source/reference.ipynb /autograder/submission \\
        --rerun --target local --run-student-code-on-this-machine --gradescope /autograder/results/results.json
"""

from __future__ import annotations

import json
from pathlib import Path

from . import Graded, Plan, Say, Writer


def results_json(graded: Graded) -> dict:
    """The results.json of the one submission of ``graded``."""
    from ..feedback import Redactor
    from ..grading.results import NEEDS_RERUN

    report = graded.report
    [result] = report.results
    redact = Redactor(report.reference)
    tests = []
    for check in report.reference.checks:
        entry = result["checks"][check.key]
        lines = [entry["message"]] if entry["message"] else []
        if not entry["passed"] and entry["status"] != NEEDS_RERUN:
            got = entry["got"].rstrip()
            lines += [f"expected: {entry['expected']}", *([f"got: {got}"] if got else [])]
        tests.append({
            "name": check.key,
            "score": entry["earned"],
            "max_score": entry["points"],
            "status": "passed" if entry["passed"] else "failed",
            "output": "\n".join(lines) if check.hidden else redact("\n".join(lines)),
            "visibility": "hidden" if check.hidden else "visible",
        })
    said = [result["error"]] if result["error"] else []
    for flag in result["flags"]:
        where = f" ({flag['cell']})" if flag.get("cell") else ""
        said.append(f"{flag['kind']}{where}: {redact(flag.get('for_student') or flag['message'])}")
    return {"score": result["total"], "output": "\n".join(said), "tests": tests}


def _one_submission(plan: Plan) -> str | None:
    if len(plan.submissions) == 1:
        return None
    return (f"--gradescope writes the results.json of one submission, and {len(plan.submissions)} were given: "
            "grade each submission on its own")


def _gradescope(graded: Graded, path: Path, say: Say) -> None:
    path.write_text(json.dumps(results_json(graded), indent=1, ensure_ascii=False) + "\n", encoding="utf-8",
                    errors="replace")


WRITERS = [
    Writer("gradescope", "grade", "Write Gradescope's autograder results.json (one submission): the score, "
           "and a test per check.", _gradescope, totals="a Gradescope score", check=_one_submission),
]
