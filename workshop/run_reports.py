"""Reports of headless runs (`workshop run`): the summary lines naming each failed cell and check,
and JUnit XML."""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

if TYPE_CHECKING:
    from .runner import CellResult, CheckResult, NotebookResult


def failed_cell_line(cell: CellResult) -> str:
    """``cell 3 (id 1f0c2a9e): exit status 2; stderr: ls: cannot access '/nope'``"""
    return f"{cell.name}: {cell.error}"


def failed_check_line(check: CheckResult) -> str:
    """``cell 2 (id 9d1e): check stdout /^bye/: stdout does not match /^bye/``; a check
    that did not run says so."""
    why = check.message or check.status
    if check.status == "missing":
        why = f"not run ({why})" if check.message else "not run"
    return f"{check.cell or check.key}: check {check.name or check.key}: {why}"


def run_headline(result: NotebookResult) -> str:
    """What a notebook's run came to, in one line: failed cells, cells not run, checks."""
    parts = []
    failed = result.failed_cells
    if len(failed) == 1:
        parts.append(f"{failed[0].name} failed")
    elif failed:
        parts.append(f"{len(failed)} cells failed")
    not_run = sum(1 for c in result.cells if c.status == "not run")
    if not_run and (failed or result.error):
        parts.append(f"{not_run} cell{'s' if not_run > 1 else ''} not run")
    if result.error and not any(c.error and result.error in c.error for c in failed):
        parts.append(result.error)
    passed = len(result.checks) - len(result.failed_checks)
    parts.append(f"{passed}/{len(result.checks)} checks passed" if result.checks else "no checks")
    return "; ".join(parts)


def run_details(result: NotebookResult) -> list[str]:
    """A line per failed cell and per failed check, in notebook order."""
    lines = [(c.index, failed_cell_line(c)) for c in result.failed_cells]
    lines += [(c.cell_index, failed_check_line(c)) for c in result.failed_checks]
    return [line for _, line in sorted(lines, key=lambda item: item[0])]


def junit_xml(results: list[NotebookResult]) -> str:
    """JUnit XML: a test suite per notebook, a test case per check and per failed cell,
    each cell named as everywhere else (``cell 3 (id 1f0c2a9e)``)."""
    suites = ET.Element("testsuites")
    for result in results:
        _junit_suite(suites, result)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _junit_suite(suites: ET.Element, result: NotebookResult) -> None:
    suite = ET.SubElement(suites, "testsuite", name=str(result.path), time=f"{result.duration:.3f}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    classname = result.path.stem

    def case(name: str, outcome: str | None = None, message: str = "", text: str = "", kind: str = "") -> None:
        counts["tests"] += 1
        element = ET.SubElement(suite, "testcase", classname=classname, name=name)
        if outcome:
            counts["failures" if outcome == "failure" else "errors"] += 1
            detail = ET.SubElement(element, outcome, message=message, **({"type": kind} if kind else {}))
            detail.text = text or message

    failed = result.failed_cells
    if result.error and not any(c.error and result.error in c.error for c in failed):
        case("notebook", "error", result.error)  # the run stopped, or never started, outside any cell's error
    for check in result.checks:
        name = f"{check.cell}: {check.name}" if check.cell and check.name else check.key
        if check.passed:
            case(name)
            continue
        detail = f"{failed_check_line(check)}\ncommand:\n{check.command}\nexpected: {check.expected}\ngot: {check.got}\n"
        case(name, "failure", failed_check_line(check), detail, "not-run" if check.status == "missing"
             else check.status)
    for cell in failed:
        case(cell.name, "error", failed_cell_line(cell))
    for name, count in counts.items():
        suite.set(name, str(count))


__all__ = ["failed_cell_line", "failed_check_line", "junit_xml", "run_details", "run_headline"]
