"""One feedback page per student: self-contained HTML a student can read on a phone.

Each page shows the student's score, every task with the student's own code or
answer, what each visible check said and the points it gave, the flags raised
on the notebook, the hidden checks as passed or failed only (never their
name, script, expectation, message or output), and the explanations the
student copy left out (answer regions, ``<!-- BEGIN ANSWER -->``) under the
task they answer.  A page never names another student or shows their id: a
flag about a copy says "another submission".  A submission is
attacker-controlled: every value is escaped, the page's Content-Security-Policy
allows no script, no image, no request at all and only its own stylesheet (by
hash), and a text that quotes a line of a hidden check (a student's code could
have read one while it ran in a rerun and printed it) is withheld.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .grading.reference import RefCheck, Reference
from .grading.results import NEEDS_RERUN, CheckEntry, GradeResult, Report

WITHHELD = "(withheld: this text quotes a hidden check)"
_MIN_FRAGMENT = 8  # characters a line of a hidden check needs before its appearance counts as a quote


@dataclass
class PageCheck:
    title: str
    state: str  # passed, failed, waiting (not judged yet)
    verdict: str  # in words
    earned: float
    points: float
    message: str = ""
    expected: str = ""


@dataclass
class PageTask:
    label: str
    kind: str  # code, markdown
    answer: str | None
    checks: list[PageCheck] = field(default_factory=list)
    manual_points: float = 0.0
    explanations: list[str] = field(default_factory=list)  # the reference's answer regions for this task

    @property
    def earned(self) -> float:
        return sum(c.earned for c in self.checks)

    @property
    def points(self) -> float:
        """The points its checks give (those given by hand apart)."""
        return sum(c.points for c in self.checks)


class Redactor:
    """Keeps what a hidden check is out of a text: its quoted name becomes "a hidden
    check", and a text holding a line of its script or its expectation is withheld."""

    def __init__(self, ref: Reference):
        hidden = [c for c in ref.checks if c.hidden]
        self.names = sorted({c.name for c in hidden}, key=len, reverse=True)
        fragments: set[str] = set()
        for check in hidden:
            if check.kind == "check":
                fragments.update(_pieces(check.command))
            elif check.expectation is not None:
                fragments.update({check.expectation.spec, check.expectation.describe()})
        for cell in ref.cells:
            if cell.hidden:
                fragments.update(_pieces(cell.source))
        self.fragments = sorted(f for f in fragments if len(f) >= _MIN_FRAGMENT)

    def __call__(self, text) -> str:
        text = str(text or "")
        if any(fragment in text for fragment in self.fragments):
            return WITHHELD
        for name in self.names:
            text = text.replace(f"'{name}'", "a hidden check")
        return text


_SEPARATORS = re.compile(r"\|\||&&|[;|\n]")
_FAIL_REASON = re.compile(r"FAIL:\s*([^\"'\n]+)")


def _pieces(script: str) -> set[str]:
    """What of a script may be quoted: its lines, the commands on them, the reasons it fails with."""
    lines = {line.strip() for line in script.split("\n")}
    commands = {part.strip() for part in _SEPARATORS.split(script)}
    return lines | commands | {m.strip() for m in _FAIL_REASON.findall(script)}


class Unnamer:
    """Keeps other students off a student's page: each name or id of another submission (as a whole
    word) becomes "another submission".  Flags that name others carry a text for the student that
    names no one (``for_student``); this also holds for any text that does.  Words under three
    characters and numbers under four digits are left: they would hide cell numbers and identify no one."""

    def __init__(self, others: Sequence[str]):
        words = sorted({w for w in map(str, others) if len(w.strip()) >= 3 and not (w.isdigit() and len(w) < 4)},
                       key=len, reverse=True)
        self.pattern = re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words)) if words else None

    def __call__(self, text: str) -> str:
        return self.pattern.sub("another submission", text) if self.pattern else text


_VERDICTS = {"passed": "passed", "failed": "failed", "invalid": "not counted", "missing": "did not run",
             NEEDS_RERUN: "not judged yet"}


def _page_check(check: RefCheck, entry: CheckEntry, number: int | None, redact: Redactor, title: str) -> PageCheck:
    status = entry.get("status", "failed")
    state = "passed" if entry.get("passed") else "waiting" if status == NEEDS_RERUN else "failed"
    verdict = _VERDICTS.get(status, "failed")
    if number is not None:  # hidden: whether it passed, and its points, nothing else
        return PageCheck(f"hidden check {number}", state, verdict, float(entry.get("earned", 0)), check.points)
    message = "" if entry.get("passed") else redact(entry.get("message"))
    expected = "" if entry.get("passed") or check.kind != "expect" or message else redact(entry.get("expected"))
    return PageCheck(title, state, verdict, float(entry.get("earned", 0)), check.points, message, expected)


def page_data(report: Report, result: GradeResult, assignment: str, others: Sequence[str] | None = None) -> dict:
    """What one student's page shows (plain data, every text redacted of hidden checks).  ``others``:
    the names and ids of the other students, never shown (default: the other submissions' names)."""
    ref = report.reference
    redact = Redactor(ref)
    if others is None:
        others = [str(r.get("student", "")) for r in report.results if r is not result]
    unname = Unnamer([o for o in others if o != str(result.get("student", ""))])
    numbers = {c.key: n for n, c in enumerate((c for c in ref.checks if c.hidden), 1)}
    missing = {"status": "missing", "passed": False, "earned": 0.0}
    in_tasks = {k for t in ref.tasks for k in t.checks}
    checks = {c.key: _page_check(c, result["checks"].get(c.key, missing), numbers.get(c.key), redact,
                                 c.name if c.key in in_tasks else f"{c.label}: {c.name}")
              for c in ref.checks}
    answers = result.get("answers") or {}
    tasks = [PageTask(t.label, t.kind, answers.get(t.label), [checks[k] for k in t.checks], t.manual_points,
                      list(t.explanations))
             for t in ref.tasks]
    others = [checks[c.key] for c in ref.checks if c.key not in in_tasks]
    unjudged = sum(c.points for c in checks.values() if c.state == "waiting")
    how = (f"Graded from a fresh run of your notebook {_where(result.get('rerun_target'))}, with the "
           "assignment's checks put back." if result.get("rerun") else
           "Graded from the results saved in your notebook when you ran it.")
    return {
        "assignment": assignment, "student": str(result.get("student", "")), "how": how,
        "total": float(result.get("total", 0)), "max": ref.max_points, "unjudged": unjudged,
        "manual": ref.manual_points, "error": unname(redact(result.get("error"))) if result.get("error") else "",
        "flags": [{"kind": str(f.get("kind", "")), "cell": str(f.get("cell") or ""),
                   "message": unname(redact(f.get("for_student") or f.get("message")))}
                  for f in result.get("flags", [])],
        "tasks": tasks, "others": others,
        "others_earned": sum(c.earned for c in others), "others_points": sum(c.points for c in others),
    }


def _where(target) -> str:
    from .targets import kind_class

    return kind_class(str(target or "")).rerun_where


def _environment():
    import jinja2  # only the HTML pages need it

    return jinja2.Environment(loader=jinja2.PackageLoader("workshop", "templates"), autoescape=True)


def feedback_html(report: Report, result: GradeResult, assignment: str, others: Sequence[str] | None = None) -> str:
    """One student's page: self-contained, escaped, no script, naming no other student (see page_data)."""
    env = _environment()
    css = env.loader.get_source(env, "feedback.css")[0]
    style_hash = "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return env.get_template("feedback.html.j2").render(
        page=page_data(report, result, assignment, others), css=css, style_hash=style_hash, num=lambda v: f"{v:g}")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def page_names(names: Sequence[str]) -> list[str]:
    """A file name for each student's page: only letters, digits, '.', '_' and '-', never hidden, never twice."""
    taken: set[str] = set()
    found = []
    for name in names:
        base = _UNSAFE.sub("_", str(name)).strip("._-")[:80] or "student"
        unique, n = base, 2
        while unique.lower() in taken:
            unique, n = f"{base}-{n}", n + 1
        taken.add(unique.lower())
        found.append(unique + ".html")
    return found


def write_feedback(report: Report, out_dir: Path | str, assignment: str | None = None,
                   titles: Sequence[str] | None = None, files: Sequence[str] | None = None) -> list[Path]:
    """Write one page per student into ``out_dir``.  ``titles`` name the students on
    their pages, ``files`` their pages' files (default: the students' names)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    assignment = assignment or report.reference.path.stem
    names = [str(r["student"]) for r in report.results]
    known = [[name, *(titles[n:n + 1] if titles else []), *(files[n:n + 1] if files else [])]
             for n, name in enumerate(names)]  # every way a student is named or identified
    paths = []
    for n, (result, file_name) in enumerate(zip(report.results, page_names(files or names), strict=True)):
        shown = dict(result, student=titles[n]) if titles else result
        others = {str(o) for i, ways in enumerate(known) if i != n for o in ways} - {str(o) for o in known[n]}
        path = out_dir / file_name
        path.write_text(feedback_html(report, shown, assignment, sorted(others)), encoding="utf-8",
                        errors="replace")
        paths.append(path)
    return paths


__all__ = ["Redactor", "Unnamer", "WITHHELD", "feedback_html", "page_data", "page_names", "write_feedback"]
