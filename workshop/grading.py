"""Grading executed notebooks against a reference notebook.

Which checks exist, their names and their points come from the instructor's
reference notebook (cells matched by id); results come from each submission's
records.  ``%expect`` checks are evaluated again on the outputs saved in the
submission; ``%%check`` results are taken from the record when the script that
ran is the reference's own (same digest).  A submission cannot pass by deleting
or editing checks, and these are flagged:

- ``unreadable``: the file is not a notebook for this kernel
- ``cell-missing``: a cell with checks was deleted
- ``record-missing``: a cell with checks has no record (not run, or outputs cleared)
- ``record-moved``: the record belongs to another cell
- ``output-edited``: the shown stdout/stderr differ from the record's digests
- ``check-removed`` / ``check-edited``: a check of the reference is missing
  from the cell, or its script differs
- ``locked-changed``: the source of a locked cell (``metadata.workshop.locked``
  or nbgrader's ``editable: false``) differs from the reference
- ``sessions``: checked cells ran in more than one kernel session
- ``out-of-order``: checked cells ran in another order than the notebook's

Checks of a cell flagged ``record-missing``, ``output-edited`` or
``locked-changed`` earn no points; the other flags are for the instructor.

Notebooks are read as plain JSON (not validated by nbformat) so that a class
of a thousand submissions grades in seconds.  ``--rerun`` executes each
submission again on a fresh target through any ``concurrent.futures``-style
executor (``submit(fn, *args)`` returning futures with ``result()``), so a
Dask ``distributed.Client`` can stand in for the local pool.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .checks import CheckSyntaxError, Expectation, cell_checks, evaluate, is_check_line, split_checks
from .errors import GradingError, NoChecksError
from .records import cell_record, cell_streams, multiline_text, sha256_text, stream_matches
from .text import tail

TAIL = 3000  # characters of a failing cell's output kept for the report


# ---- reading notebooks -------------------------------------------------------
def read_notebook_json(path: Path) -> dict:
    """Read a notebook as plain JSON with the checks that matter for grading."""
    try:
        with open(path, encoding="utf-8") as fh:
            nb = json.load(fh)
    except FileNotFoundError:
        raise GradingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GradingError(f"{path}: is a directory, not a notebook") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GradingError(f"{path}: not a readable notebook (invalid JSON: {exc})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise GradingError(f"{path}: not a notebook (no list of cells)")
    if nb.get("nbformat") != 4:
        raise GradingError(f"{path}: notebook format {nb.get('nbformat')} is not supported (need 4)")
    kernel = (nb.get("metadata") or {}).get("kernelspec", {}).get("name")
    if kernel and kernel != "workshop":
        raise GradingError(f"{path}: a notebook for the '{kernel}' kernel, not 'workshop'")
    return nb


def _workshop_meta(cell: dict) -> dict:
    meta = (cell.get("metadata") or {}).get("workshop")
    return meta if isinstance(meta, dict) else {}


def _locked(cell: dict) -> bool:
    meta = cell.get("metadata") or {}
    return bool(_workshop_meta(cell).get("locked")) or meta.get("editable") is False


# ---- the reference -----------------------------------------------------------
@dataclass
class RefCheck:
    key: str  # unique column name: "<cell label>:<check name>"
    cell_id: str
    label: str
    id: str  # within the cell: "expect:..." or "check:NAME"
    kind: str  # "expect" or "check"
    name: str
    points: float
    expectation: Expectation | None = None
    digest: str | None = None  # of a %%check script
    command: str = ""  # what runs: the cell's code or the check script


@dataclass
class RefCell:
    id: str
    index: int
    label: str
    source: str
    locked: bool
    checks: list[RefCheck] = field(default_factory=list)


@dataclass
class Reference:
    path: Path
    cells: list[RefCell]
    checks: list[RefCheck]

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks)


def _points(meta: dict, name: str, given: float | None) -> float:
    if given is not None:
        return given
    points = meta.get("points")
    if isinstance(points, dict):
        points = points.get(name)
    if isinstance(points, (int, float)) and not isinstance(points, bool) and points >= 0:
        return float(points)
    return 1.0


def load_reference(path: Path | str) -> Reference:
    path = Path(path)
    nb = read_notebook_json(path)
    cells: list[RefCell] = []
    checks: list[RefCheck] = []
    keys: set[str] = set()
    ordinal = 0
    for index, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        ordinal += 1
        source = multiline_text(cell.get("source"))
        meta = _workshop_meta(cell)
        try:
            found = cell_checks(source)
        except CheckSyntaxError as exc:
            raise GradingError(f"{path}: code cell {ordinal}: {exc}") from None
        locked = _locked(cell)
        if not found and not locked:
            continue
        cell_id = cell.get("id")
        if not cell_id:
            raise GradingError(f"{path}: cells have no ids (notebook format 4.5 or later is needed)")
        label = str(meta.get("name") or f"cell{ordinal}")
        ref_cell = RefCell(cell_id, index, label, source, locked)
        code = "\n".join(line for line in split_checks(source)[0].split("\n")
                         if not line.strip().startswith("%expect"))
        for exp in found.expectations:
            ref_cell.checks.append(RefCheck("", cell_id, label, exp.id, "expect", exp.name,
                                            _points(meta, exp.name, None), exp, command=code.strip()))
        for script in found.scripts:
            ref_cell.checks.append(RefCheck("", cell_id, label, script.id, "check", script.name,
                                            _points(meta, script.name, script.points), None,
                                            script.digest, command=script.script))
        for check in ref_cell.checks:
            key = f"{label}:{check.name}"
            n = 2
            while key in keys:
                key = f"{label}:{check.name}#{n}"
                n += 1
            keys.add(key)
            check.key = key
            checks.append(check)
        cells.append(ref_cell)
    if not checks:
        raise NoChecksError(f"{path}: the reference has no checks (%expect or %%check); nothing to grade")
    return Reference(path, cells, checks)


# ---- grading one submission --------------------------------------------------
def _flag(flags: list[dict], kind: str, cell: str | None, message: str) -> None:
    flags.append({"kind": kind, "cell": cell, "message": message})


def grade_submission(ref: Reference, path: Path | str, student: str | None = None) -> dict:
    """Grade one executed notebook; the result is plain data (JSON, pickle).

    A malformed notebook or record scores nothing and says so; it never stops
    the grading of the others."""
    try:
        return _grade_submission(ref, path, student)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return _unreadable(ref, Path(path), student,
                           f"{path}: malformed notebook or record ({type(exc).__name__}: {exc})")


def _unreadable(ref: Reference, path: Path, student: str | None, message: str) -> dict:
    result = {
        "student": student or path.stem, "path": str(path), "error": message, "total": 0.0,
        "max": ref.max_points, "checks": {}, "flags": [], "cells": {},
    }
    _flag(result["flags"], "unreadable", None, message)
    for check in ref.checks:
        result["checks"][check.key] = _check_entry(check, False, "the notebook could not be read", "missing")
    return result


def _grade_submission(ref: Reference, path: Path | str, student: str | None = None) -> dict:
    path = Path(path)
    result = {
        "student": student or path.stem,
        "path": str(path),
        "error": None,
        "total": 0.0,
        "max": ref.max_points,
        "checks": {},
        "flags": [],
        "cells": {},
    }
    flags: list[dict] = result["flags"]
    try:
        nb = read_notebook_json(path)
    except GradingError as exc:
        return _unreadable(ref, path, student, str(exc))
    by_id = {cell.get("id"): cell for cell in nb["cells"] if cell.get("cell_type") == "code" and cell.get("id")}
    ran: list[tuple[int, str, dict]] = []  # (position in submission, label, record) of checked cells
    positions = {cell.get("id"): i for i, cell in enumerate(nb["cells"])}
    for ref_cell in ref.cells:
        cell = by_id.get(ref_cell.id)
        label = ref_cell.label
        if cell is None:
            _flag(flags, "cell-missing", label, "the cell was deleted")
            for check in ref_cell.checks:
                result["checks"][check.key] = _check_entry(check, False, "the cell was deleted", "missing")
            continue
        source = multiline_text(cell.get("source"))
        record = cell_record(cell)
        zero = None  # why this cell's checks earn nothing
        if ref_cell.locked:
            run_digest = record.get("source_digest") if record else None
            if source != ref_cell.source or (run_digest and run_digest != sha256_text(ref_cell.source)):
                _flag(flags, "locked-changed", label, "the source of a locked cell was changed")
                zero = "the locked cell was changed"
        if not ref_cell.checks:
            continue
        if record is None:
            _flag(flags, "record-missing", label, "no record: the cell was not run or its outputs were cleared")
            zero = zero or "the cell has no record (not run?)"
            stdout = stderr = ""
        else:
            stdout, stderr = cell_streams(cell)
            if record.get("cell_id") and record.get("cell_id") != ref_cell.id:
                _flag(flags, "record-moved", label, f"the record belongs to cell {record.get('cell_id')}")
                zero = zero or "the record belongs to another cell"
            edited = [name for name, text in (("stdout", stdout), ("stderr", stderr))
                      if not stream_matches(text, record.get(name))]
            if edited:
                _flag(flags, "output-edited", label, f"shown {' and '.join(edited)} differ from the record")
                zero = zero or f"the shown {' and '.join(edited)} was edited after the run"
            ran.append((positions.get(ref_cell.id, 0), label, record))
        recorded = {c.get("id"): c for c in (record or {}).get("checks", []) if isinstance(c, dict)}
        failing = False
        for check in ref_cell.checks:
            got = recorded.get(check.id)
            if got is None and record is not None:
                _flag(flags, "check-removed", label, f"the check '{check.name}' is not in the cell's record")
            if zero:
                entry = _check_entry(check, False, zero, "invalid")
            elif check.kind == "expect":
                passed, message, shown = evaluate(check.expectation, int(record.get("exit_status", -1)),
                                                  stdout, stderr)
                entry = _check_entry(check, passed, message, "passed" if passed else "failed", shown)
            elif got is None:
                entry = _check_entry(check, False, "the check did not run (removed from the cell?)", "missing")
            elif got.get("digest") != check.digest:
                _flag(flags, "check-edited", label, f"the script of check '{check.name}' was changed")
                entry = _check_entry(check, False, "the check script differs from the reference", "invalid")
            else:
                passed = bool(got.get("passed"))
                entry = _check_entry(check, passed, str(got.get("message") or ""),
                                     "passed" if passed else "failed", str(got.get("output") or ""))
            failing = failing or not entry["passed"]
            result["checks"][check.key] = entry
        if failing:
            result["cells"][label] = {
                "exit_status": record.get("exit_status") if record else None,
                "stdout": tail(stdout, TAIL),
                "stderr": tail(stderr, TAIL),
                "source": tail(source, TAIL),
            }
    _order_flags(ran, flags)
    result["total"] = sum(c["earned"] for c in result["checks"].values())
    return result


def _order_flags(ran: list[tuple[int, str, dict]], flags: list[dict]) -> None:
    sessions = {r.get("session") for _, _, r in ran}
    if len(sessions) > 1:
        _flag(flags, "sessions", None,
              f"checked cells ran in {len(sessions)} different kernel sessions (the kernel was restarted between them)")
    ran = sorted(ran, key=lambda item: item[0])
    late = []
    for (_, label_a, a), (_, label_b, b) in zip(ran, ran[1:], strict=False):
        if a.get("session") == b.get("session") and a.get("execution_count", 0) >= b.get("execution_count", 0):
            late.append(f"{label_a} (#{a.get('execution_count')}) ran after {label_b} (#{b.get('execution_count')})")
    if late:
        _flag(flags, "out-of-order", None, "cells ran out of order: " + "; ".join(late[:5]))


def _check_entry(check: RefCheck, passed: bool, message: str, status: str, got: str = "") -> dict:
    return {
        "passed": passed,
        "status": status,
        "earned": check.points if passed else 0.0,
        "points": check.points,
        "message": message,
        "expected": check.expectation.describe() if check.expectation else "the check script passes",
        "got": got,
    }


# ---- many submissions --------------------------------------------------------
def student_names(paths: Sequence[Path]) -> list[str]:
    """File stems, or folder names when every file has the same name."""
    stems = [p.stem for p in paths]
    if len(paths) > 1 and len(set(stems)) == 1:
        parents = [p.resolve().parent.name for p in paths]
        if len(set(parents)) == len(parents):
            return parents
    seen: dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem} ({seen[stem]})")
    return names


def expand_paths(items: Iterable[Path | str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            paths.extend(sorted(p for p in item.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts))
        else:
            paths.append(item)
    return paths


def _grade_path(ref_path: str, path: str, student: str, _cache: dict = {}) -> dict:  # noqa: B006
    ref = _cache.get(ref_path)
    if ref is None:
        ref = _cache[ref_path] = load_reference(ref_path)
    return grade_submission(ref, path, student)


def rerun_submission(ref_path: str, path: str, student: str, target: str | None = None,
                     timeout: float | None = None, workdir: str | None = None) -> dict:
    """Execute a submission again and grade the fresh run; a failure of the
    machinery (a VM that does not boot, a kernel that does not start) is a flag
    on that submission, not the end of the whole grading run."""
    try:
        return _rerun_submission(ref_path, path, student, target, timeout, workdir)
    except Exception as exc:
        result = grade_submission(load_reference(ref_path), path, student)
        result["rerun"] = True
        result["flags"].append({"kind": "rerun-error", "cell": None,
                                "message": f"the rerun failed: {type(exc).__name__}: {exc}"})
        return result


def _rerun_submission(ref_path: str, path: str, student: str, target: str | None = None,
                      timeout: float | None = None, workdir: str | None = None) -> dict:
    """Execute a submission again (with the reference's checks and locked cells
    restored) and grade the fresh run.  A plain function of plain arguments, so
    that any executor (threads, processes, a Dask cluster) can run it."""
    from .runner import run_notebook

    ref = load_reference(ref_path)
    try:
        nb = read_notebook_json(Path(path))
    except GradingError as exc:
        return grade_submission(ref, path, student) | {"error": str(exc), "rerun": True}
    restore_reference(ref, nb)
    with tempfile.TemporaryDirectory(prefix="workshop-rerun-", dir=workdir) as tmp, \
            fresh_target(target) as job_target:
        prepared = Path(tmp) / Path(path).name
        prepared.write_text(json.dumps(nb), encoding="utf-8")
        run = run_notebook(prepared, out_dir=Path(tmp) / "out", target=job_target, timeout=timeout,
                           allow_errors=True, workdir=Path(path).resolve().parent)
        result = grade_submission(ref, run.out_path, student)
    result["path"] = str(path)
    result["rerun"] = True
    result["rerun_target"] = job_target
    if run.error:
        result["flags"].append({"kind": "rerun-error", "cell": None, "message": run.error})
    return result


@contextlib.contextmanager
def fresh_target(target: str | None):
    """The target one rerun uses.  For ``qemu:NAME`` every rerun gets its own
    new VM (from the cached image), destroyed afterwards, so no submission sees
    what another left behind; other targets are used as they are."""
    if not target or not target.startswith("qemu:"):
        yield target
        return
    from .vm import VM

    vm = VM(f"{target[5:]}-{secrets.token_hex(4)}")
    try:
        vm.up()
        yield f"qemu:{vm.name}"
    finally:
        if vm.dir.exists():
            vm.destroy()


def restore_reference(ref: Reference, nb: dict) -> None:
    """Put the reference's checks (and locked cells) back into a submission."""
    by_id = {cell.get("id"): cell for cell in nb["cells"]}
    for ref_cell in ref.cells:
        cell = by_id.get(ref_cell.id)
        if cell is None:
            continue
        if ref_cell.locked:
            cell["source"] = ref_cell.source
            continue
        ref_lines = ref_cell.source.split("\n")
        ref_expects = [line for line in ref_lines if line.strip().startswith("%expect")]
        ref_checks = next((ref_lines[i:] for i, line in enumerate(ref_lines) if is_check_line(line)), [])
        lines = multiline_text(cell.get("source")).split("\n")
        for i, line in enumerate(lines):
            if is_check_line(line):
                lines = lines[:i]
                break
        lines = [line for line in lines if not line.strip().startswith("%expect")]
        cell["source"] = "\n".join(ref_expects + lines + ref_checks)


@dataclass
class Report:
    reference: Reference
    results: list[dict]

    def as_json(self) -> dict:
        return {
            "reference": str(self.reference.path),
            "max_points": self.reference.max_points,
            "checks": [
                {"key": c.key, "cell_id": c.cell_id, "cell": c.label, "kind": c.kind, "name": c.name,
                 "points": c.points}
                for c in self.reference.checks
            ],
            "submissions": self.results,
        }


def dask_executor(spec: str):
    """A Dask ``distributed.Client`` for ``dask:ADDRESS``: it has the executor's
    ``submit`` and its futures' ``result``, so reruns go to the cluster's workers.
    The workers need workshop installed and the notebooks' paths readable."""
    kind, _, address = spec.partition(":")
    if kind != "dask" or not address:
        raise GradingError(f"--executor {spec}: write dask:ADDRESS, e.g. dask:tcp://scheduler:8786")
    try:
        from distributed import Client
    except ImportError:
        raise GradingError("--executor dask:... needs Dask's distributed package: pip install distributed") from None
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise GradingError(f"--executor {spec}: cannot reach the Dask scheduler ({exc}); is it running?") from None


def grade(reference: Path | str, submissions: Iterable[Path | str], *, rerun: bool = False,
          target: str | None = None, jobs: int = 1, executor=None, timeout: float | None = None,
          on_result=None) -> Report:
    """Grade many submissions; ``executor`` is any object with ``submit``."""
    ref = load_reference(reference)
    if rerun and target:
        from .targets import TargetError, parse_target

        try:
            parse_target(target)
        except TargetError as exc:
            raise GradingError(f"--target {target}: {exc}") from None
    paths = expand_paths(submissions)
    names = student_names(paths)
    results: list[dict] = []
    if not rerun and executor is None and jobs <= 1:
        for path, name in zip(paths, names, strict=True):
            results.append(grade_submission(ref, path, name))
            if on_result:
                on_result(results[-1])
        return Report(ref, results)
    own = executor is None
    if own:
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

        # Reruns wait on kernels (threads suffice); plain grading is CPU work.
        executor = ThreadPoolExecutor(max(jobs, 1)) if rerun else ProcessPoolExecutor(max(jobs, 1))
    try:
        ref_path = str(Path(reference).resolve())
        if rerun:
            # absolute paths: an executor's workers need not share this process's cwd
            futures = [executor.submit(rerun_submission, ref_path, str(Path(p).resolve()), n, target, timeout)
                       for p, n in zip(paths, names, strict=True)]
        else:
            futures = [executor.submit(_grade_path, ref_path, str(p), n) for p, n in zip(paths, names, strict=True)]
        for future in futures:
            results.append(future.result())
            if on_result:
                on_result(results[-1])
    finally:
        if own:
            executor.shutdown()
    return Report(ref, results)


# ---- reports -------------------------------------------------------------------
def _num(value: float) -> str:
    return f"{value:g}"


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
    import jinja2

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
    from rich.console import Console
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


__all__ = [
    "GradingError", "NoChecksError", "Reference", "Report", "grade", "grade_submission", "load_reference", "print_table",
    "rerun_submission", "restore_reference", "to_csv", "to_html", "to_json", "write_reports",
]
