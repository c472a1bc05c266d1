"""Reports of results: CSV for an LMS, JSON, HTML, the terminal table, and JUnit XML of headless runs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from .grading import Report

if TYPE_CHECKING:
    from .runner import NotebookResult


def _num(value: float) -> str:
    return f"{value:g}"


# ---- grading reports -------------------------------------------------------------
def to_csv(report: Report) -> str:
    """One row per student, one column per check (points earned), then the total."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = [c.key for c in report.reference.checks]
    writer.writerow(["student", *keys, "total", "max", "flags"])
    for r in report.results:
        writer.writerow([
            r["student"],
            *(_num(r["checks"][k]["earned"]) for k in keys),
            _num(r["total"]),
            _num(r["max"]),
            "; ".join(sorted({f["kind"] for f in r["flags"]})),
        ])
    return buf.getvalue()


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=1, ensure_ascii=False)


def to_html(report: Report) -> str:
    """A self-contained page: the class overview, then every student's failing checks and cells."""
    import jinja2  # only the HTML report needs it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("workshop", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    template = env.get_template("report.html.j2")
    checks = report.reference.checks
    rates = {
        c.key: sum(1 for r in report.results if r["checks"][c.key]["passed"]) for c in checks
    }
    return template.render(
        reference=report.reference,
        checks=checks,
        results=report.results,
        rates=rates,
        num=_num,
    )


def print_table(report: Report, console=None) -> None:
    """A row per student on the terminal: points, checks passed, the failed ones, flags."""
    from rich.console import Console  # only the terminal table needs rich
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{report.reference.path.name}: {len(report.results)} submissions, "
                        f"{len(report.reference.checks)} checks, {_num(report.reference.max_points)} points")
    table.add_column("student")
    table.add_column("points", justify="right")
    table.add_column("passed", justify="right")
    table.add_column("failed checks")
    table.add_column("flags", style="yellow")
    n = len(report.reference.checks)
    for r in report.results:
        failed = [k for k, c in r["checks"].items() if not c["passed"]]
        passed = n - len(failed)
        shown = ", ".join(failed[:4]) + (f" +{len(failed) - 4}" if len(failed) > 4 else "")
        style = "red" if r["error"] else ("green" if not failed else None)
        table.add_row(r["student"], f"{_num(r['total'])}/{_num(r['max'])}", f"{passed}/{n}", shown,
                      ", ".join(sorted({f['kind'] for f in r['flags']})), style=style)
    console.print(table)


def write_reports(report: Report, csv_path: Path | None = None, html_path: Path | None = None,
                  json_path: Path | None = None) -> None:
    for path, render in ((csv_path, to_csv), (html_path, to_html), (json_path, to_json)):
        if path:
            Path(path).write_text(render(report), encoding="utf-8", newline="" if render is to_csv else None)


# ---- headless runs -----------------------------------------------------------------
def junit_xml(results: list[NotebookResult]) -> str:
    """JUnit XML: a test suite per notebook, a test case per check (and per
    failing cell without checks)."""
    suites = ET.Element("testsuites")
    for result in results:
        _junit_suite(suites, result)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _junit_suite(suites: ET.Element, result: NotebookResult) -> None:
    suite = ET.SubElement(suites, "testsuite", name=str(result.path), time=f"{result.duration:.3f}")
    tests = failures = errors = skipped = 0
    classname = result.path.stem
    if result.error and not result.cells:
        case = ET.SubElement(suite, "testcase", classname=classname, name="notebook")
        ET.SubElement(case, "error", message=result.error).text = result.error
        tests, errors = 1, 1
    for check in result.checks:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name=check.key)
        if check.passed:
            continue
        detail = f"command:\n{check.command}\nexpected: {check.expected}\ngot: {check.got}\n"
        if check.status == "missing":
            ET.SubElement(case, "failure", message=f"not run: {check.message}", type="not-run").text = detail
        else:
            ET.SubElement(case, "failure", message=check.message, type=check.status).text = detail
        failures += 1
    checked = {c.cell_index for c in result.checks}
    for cell in result.cells:
        if cell.status == "error" and cell.index not in checked:
            # a failing cell without checks is a test case of its own
            tests += 1
            errors += 1
            case = ET.SubElement(suite, "testcase", classname=classname, name=f"cell[{cell.index}]")
            message = f"exit status {(cell.record or {}).get('exit_status')}"
            ET.SubElement(case, "error", message=message).text = message
    for name, count in (("tests", tests), ("failures", failures), ("errors", errors), ("skipped", skipped)):
        suite.set(name, str(count))


__all__ = ["junit_xml", "print_table", "to_csv", "to_html", "to_json", "write_reports"]
