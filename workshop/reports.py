"""Reports of grades: CSV for an LMS, JSON, HTML, the terminal table (runs: :mod:`workshop.run_reports`)."""

from __future__ import annotations

import csv
import io
import json
import re

from .grading.results import NEEDS_RERUN, CheckEntry, GradeResult, Report


def _num(value: float) -> str:
    return f"{value:g}"


# ---- text a student controls ---------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def csv_text(value: str) -> str:
    """A CSV field a spreadsheet shows as text: one that starts (after spaces) with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``,
    or it would run as a formula (student names come from file names, messages
    from notebooks)."""
    return "'" + value if value.lstrip(" ").startswith(_FORMULA_START) else value


def terminal_text(value: str) -> str:
    """Text for rich that shows as itself: markup (``[red]``, ``[link=...]``) escaped,
    control characters (escape sequences, bidi overrides) made visible as U+FFFD."""
    from rich.markup import escape

    value = value.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from a JSON escape
    value = value.replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    return escape(_CONTROL.sub("\ufffd", value))


# ---- what a grade proves -------------------------------------------------------------
def proof(report: Report) -> tuple[str, str]:
    """A headline and a paragraph: what the grades in ``report`` are evidence of."""
    if not any(r.get("rerun") for r in report.results):
        return ("Graded from the saved records, not from a run",
                "These grades show that each saved notebook is consistent with a run of the workshop kernel: "
                "its outputs match the digests in its records and its checks are the reference's. Records are "
                "not signed, so a student who recomputes the digests can make a consistent notebook without "
                "running anything. Copies of another student's run are flagged (replay, shared-session, same-outputs). "
                "For evidence about a run, grade again with --rerun --target qemu:NAME.")
    where = report.rerun_target or "the target"
    text = (f"Each submission was executed again on {where}, with the reference's checks put back and the target "
            "fixed, so every check ran in that fresh run, not in the student's session; the records in the "
            "student's notebook were not used for points. A student who is root on the target can still lie to "
            "a check through the system itself (a replaced binary, a kernel module).")
    from .targets import kind_class

    text += kind_class(report.rerun_target).rerun_proof if report.rerun_target else ""
    return "Graded from a fresh rerun of every submission", text


def print_proof(report: Report, console=None) -> None:
    from rich.console import Console

    console = console or Console()
    headline, text = proof(report)
    console.print(f"[bold]{terminal_text(headline)}.[/bold] {terminal_text(text)}", highlight=False)


# ---- grading reports -------------------------------------------------------------
def to_csv(report: Report) -> str:
    """One row per student, one column per check (points earned), then the total."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = [c.key for c in report.reference.checks]
    writer.writerow([csv_text(k) for k in ["student", *keys, "total", "max", "flags"]])
    for r in report.results:
        writer.writerow([
            csv_text(str(r["student"])),
            *(_earned(r["checks"][k]) for k in keys),
            _num(r["total"]),
            _num(r["max"]),
            csv_text("; ".join(sorted({f["kind"] for f in r["flags"]}))),
        ])
    return buf.getvalue()


def _earned(entry: CheckEntry) -> str:
    """Points earned, or nothing for a hidden check not judged (it needs --rerun)."""
    return "" if entry.get("status") == NEEDS_RERUN else _num(entry["earned"])


def unjudged(report: Report) -> tuple[int, float]:
    """How many hidden checks of the reference were not judged (no rerun), and their points."""
    if any(r.get("rerun") for r in report.results):
        return 0, 0.0
    hidden = [c for c in report.reference.checks if c.hidden]
    return len(hidden), sum(c.points for c in hidden)


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=1, ensure_ascii=False)


def to_html(report: Report) -> str:
    """A self-contained page: the class overview, then every student's failing checks and cells.
    Every value is escaped, and the page's Content-Security-Policy allows no script at all."""
    import jinja2  # only the HTML report needs it

    env = jinja2.Environment(loader=jinja2.PackageLoader("workshop", "templates"), autoescape=True)
    template = env.get_template("report.html.j2")
    checks = report.reference.checks
    rates = {
        c.key: sum(1 for r in report.results if r["checks"][c.key]["passed"]) for c in checks
    }
    headline, text = proof(report)
    return template.render(
        reference=report.reference,
        checks=checks,
        results=report.results,
        rates=rates,
        num=_num,
        proof_headline=headline,
        proof_text=text,
    )


def _row(r: GradeResult, n: int) -> tuple[list[str], str, str]:
    """A student's failed checks, checks passed (``2/3``) and flag kinds."""
    failed = [k for k, c in r["checks"].items() if not c["passed"] and c.get("status") != NEEDS_RERUN]
    passed = sum(1 for c in r["checks"].values() if c["passed"])
    return failed, f"{passed}/{n}", ", ".join(sorted({f["kind"] for f in r["flags"]}))


def _title(report: Report) -> str:
    return (f"{report.reference.path.name}: {len(report.results)} submissions, {len(report.reference.checks)} "
            f"checks, {_num(report.reference.max_points)} points")


def _notes(report: Report) -> list[tuple[str, str]]:
    """What the totals leave out, each with its colour: hidden checks not judged, points graded by hand."""
    notes = []
    count, points = unjudged(report)
    if count:
        notes.append(("yellow", f"{count} hidden check{'s' if count > 1 else ''} ({_num(points)} points) not judged: "
                     "a student's own run never ran them; grade with --rerun to score them"))
    if report.reference.manual_points:
        notes.append(("default", f"{_num(report.reference.manual_points)} points are to grade by hand "
                     f"({', '.join(t.label for t in report.reference.tasks if t.manual_points)}); "
                     "they are in no total here"))
    return notes


def print_table(report: Report, console=None) -> None:
    """A row per student on the terminal: points, checks passed, the failed ones, flags."""
    from rich.console import Console  # only the terminal table needs rich
    from rich.table import Table

    console = console or Console()
    table = Table(title=terminal_text(_title(report)))
    table.add_column("student")
    table.add_column("points", justify="right")
    table.add_column("passed", justify="right")
    table.add_column("failed checks")
    table.add_column("flags", style="yellow")
    n = len(report.reference.checks)
    for r in report.results:
        failed, passed, flags = _row(r, n)
        shown = ", ".join(failed[:4]) + (f" +{len(failed) - 4}" if len(failed) > 4 else "")
        style = "red" if r["error"] else ("green" if not failed else None)
        table.add_row(terminal_text(str(r["student"])), f"{_num(r['total'])}/{_num(r['max'])}", passed,
                      terminal_text(shown), terminal_text(flags), style=style)
    console.print(table)
    for colour, note in _notes(report):
        console.print(f"[{colour}]{terminal_text(note)}[/{colour}]", highlight=False)


def plain_text(value: str) -> str:
    """Text for a log file: one line, control characters (escape sequences, bidi overrides) as U+FFFD."""
    value = value.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("\ufffd", value.replace("\r\n", " ").replace("\n", " ").replace("\t", " "))


def plain_table(report: Report) -> str:
    """The terminal table for a log (cron, CI): plain aligned text, nothing cut or wrapped, each flag's
    message on a line of its own under its student, so that grades and flags can be read and grepped."""
    n = len(report.reference.checks)
    rows = [["student", "points", "passed", "failed checks", "flags"]]
    for r in report.results:
        failed, passed, flags = _row(r, n)
        rows.append([plain_text(str(r["student"])), f"{_num(r['total'])}/{_num(r['max'])}", passed,
                     plain_text(", ".join(failed)) or "-", plain_text(flags) or "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [plain_text(_title(report))]
    for i, row in enumerate(rows):
        lines.append("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
        result = report.results[i - 1] if i else None
        for flag in result["flags"] if result else ():
            where = f" ({flag['cell']})" if flag.get("cell") else ""
            lines.append(f"    {plain_text(str(flag['kind']) + where)}: {plain_text(str(flag.get('message', '')))}")
    return "\n".join([*lines, *(plain_text(note) for _, note in _notes(report))]) + "\n"


def print_self_check(report: Report, assignment: dict | None, console=None) -> bool:
    """A student's own notebook against its own (visible) checks, on the terminal; whether all passed."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    result = report.results[0]
    table = Table(title=terminal_text(f"{report.reference.path.name}: the checks in your notebook"))
    for column, justify in (("", "left"), ("check", "left"), ("points", "right"), ("what it says", "left")):
        table.add_column(column, justify=justify)
    for check in report.reference.checks:
        entry = result["checks"][check.key]
        mark = "[green]✔[/green]" if entry["passed"] else "[yellow]…[/yellow]" if entry["status"] == NEEDS_RERUN \
            else "[red]✘[/red]"
        table.add_row(mark, terminal_text(check.key), f"{_num(entry['earned'])}/{_num(check.points)}",
                      terminal_text(entry["message"] or ("" if entry["passed"] else entry["status"])))
    console.print(table)
    for flag in result["flags"]:
        where = f" ({flag['cell']})" if flag.get("cell") else ""
        console.print(f"[yellow]{terminal_text(flag['kind'] + where)}[/yellow]: {terminal_text(flag['message'])}",
                      highlight=False)
    judged = [c for c in report.reference.checks if result["checks"][c.key]["status"] != NEEDS_RERUN]
    passed = all(result["checks"][c.key]["passed"] for c in judged)
    score = f"Visible checks: {_num(result['total'])} of {_num(sum(c.points for c in judged))} points."
    others = []
    if isinstance(assignment, dict):
        for key, words in (("hidden_points", "of hidden checks (your instructor's grading runs them)"),
                           ("manual_points", "graded by hand")):
            value = assignment.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                others.append(f"{_num(value)} points {words}")
    if others:
        score += " Not in this score: " + "; ".join(others) + "."
    console.print(f"[{'green' if passed and not result['flags'] else 'yellow'}]{terminal_text(score)}[/]",
                  highlight=False)
    console.print("Nothing was run again: this reads the results saved in the notebook, so save it after "
                  "running every cell, in order, in one session.", highlight=False)
    return passed and not result["flags"]


__all__ = [
    "csv_text", "print_proof", "plain_table", "plain_text", "print_self_check", "print_table", "proof", "terminal_text",
    "to_csv", "to_html", "to_json", "unjudged",
]
