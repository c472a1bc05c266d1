"""The instructor's probe: shortcut answers run against every task, and the checks they pass.

A check is weak when an answer that does not do the work still passes it.  For
every task of a source notebook the probe writes such answers, runs each one on
a fresh target the way ``workshop grade --rerun`` runs a submission (the
reference's cells before the task, its checks put back, hidden ones too) and
grades the run with the grader itself:

- ``empty``: the solution region emptied, as the student copy has it;
- ``lines``: the reference solution with one line removed, each line in turn
  (in a Python file written by ``%%file`` the line becomes ``pass``, so the
  file still parses);
- ``printf``: the solution replaced by ``printf`` of the output the
  reference's run of the cell recorded (stdout and stderr), and its exit status;
- ``host``: the cell without its ``%%chroot``, ``%%unshare``, ``%%overlay`` and
  ``%%cgroup`` lines, so its commands run on the host.

A check that earns points for the empty answer, ``printf`` or the host is weak.
A removed line is reported when the task still earns all its points without it:
no check needed that line.

Every run stops after the cells that check its task (the task's own, and the
hidden cells below it), so a task near the top of a long notebook costs little.
On ``qemu:`` targets every run has a fresh VM.  On other targets (``local``,
SSH) the runs share one machine, so a run then goes on with the notebook's
clean-up cells (the code cells below that run ``%cleanup``), which undo
what it left outside its working directory; a notebook without any runs whole.
"""

from __future__ import annotations

import copy
import getpass
import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .assign import CODE, check_source, prepare, replace_solutions, solution_regions
from .batch import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_SUBMISSION_TIMEOUT,
    RerunJob,
    check_rerun_target,
    fresh_per_run,
    rerun_submission,
)
from .cell import is_check_line, parse_cell, split_cell
from .errors import AssignmentError, GradingError, MagicError, TargetError
from .grading.notebook import read_notebook_json
from .grading.reference import Reference, RefTask
from .records import cell_record, cell_streams, multiline_text
from .store import RERUN_FAILED
from .targets import parse_target
from .tasks import is_hidden, is_task

SHORTCUTS = ("empty", "lines", "printf", "host")
CONTAINER_MAGICS = ("chroot", "unshare", "overlay", "cgroup")
_CONTAINER_LINE = re.compile(r"^[ \t]*%%(" + "|".join(CONTAINER_MAGICS) + r")\b")


class ProbeError(Exception):
    """A source that cannot be probed (one plain sentence)."""


@dataclass
class Shortcut:
    """One shortcut answer to one task, and what it earned."""

    kind: str  # one of SHORTCUTS
    label: str  # "empty answer", "line 3 removed: cp ...", "printf of the recorded output", ...
    source: str  # the task cell as the shortcut has it
    line: int | None = None  # the removed line's number in the cell, counting from 1
    passed: list[str] = field(default_factory=list)  # keys of the task's checks it passed
    earned: float = 0.0
    error: str | None = None  # the run could not be made (the machinery, not the answer)
    timed_out: bool = False


@dataclass
class TaskProbe:
    label: str
    cell: str  # "cell 3 (id ...)"
    cell_id: str
    checks: dict[str, float]  # key -> points
    shortcuts: list[Shortcut] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # shortcuts not tried, and why
    problem: str | None = None  # why the task was not probed at all

    @property
    def points(self) -> float:
        return sum(self.checks.values())


@dataclass
class Weak:
    task: str
    check: str
    points: float
    shortcut: str
    kind: str
    line: int | None


@dataclass
class ProbeReport:
    source: Path
    target: str
    tasks: list[TaskProbe]
    runs: int = 0
    seconds: float = 0.0

    @property
    def weak(self) -> list[Weak]:
        found = []
        for task in self.tasks:
            for shortcut in task.shortcuts:
                if shortcut.error:
                    continue
                full = set(shortcut.passed) == set(task.checks)
                if shortcut.kind == "lines" and not full:
                    continue  # some check needs the line
                found += [Weak(task.label, key, task.checks[key], shortcut.label, shortcut.kind, shortcut.line)
                          for key in shortcut.passed if task.checks.get(key)]
        return found

    def full_marks(self, task: TaskProbe) -> list[Shortcut]:
        """The shortcuts that earn all of a task's points."""
        return [s for s in task.shortcuts if not s.error and task.points and set(s.passed) == set(task.checks)]

    def as_json(self) -> dict:
        return {
            "notebook": str(self.source),
            "target": self.target,
            "runs": self.runs,
            "seconds": round(self.seconds, 1),
            "weak": [asdict(w) for w in self.weak],
            "tasks": [{
                "task": t.label, "cell": t.cell, "checks": t.checks, "problem": t.problem, "skipped": t.skipped,
                "full_marks": [s.label for s in self.full_marks(t)],
                "shortcuts": [{"kind": s.kind, "shortcut": s.label, "line": s.line, "passed": s.passed,
                               "earned": s.earned, "points": t.points, "error": s.error, "timed_out": s.timed_out}
                              for s in t.shortcuts],
            } for t in self.tasks],
        }


# ---- the shortcut answers ---------------------------------------------------------
def _code_end(lines: Sequence[str]) -> int:
    return next((i for i, line in enumerate(lines) if is_check_line(line)), len(lines))


def _answer_lines(lines: list[str]) -> tuple[list[tuple[int, int]], list[int]]:
    """The solution regions of a task cell's code, and the indexes of the answer's lines
    (inside the regions; for a task without regions, every line of its code but magics)."""
    end = _code_end(lines)
    regions, _ = solution_regions(lines[:end], CODE)
    if regions:
        return regions, [i for start, stop in regions for i in range(start + 1, stop)]
    return [], [i for i in range(end) if lines[i].strip() and not lines[i].strip().startswith("%")]


def _file_magic(lines: list[str]) -> str | None:
    """The path a ``%%file`` cell writes, or None for a cell of shell code."""
    try:
        _, cell_magics, _ = split_cell("\n".join(lines[:_code_end(lines)]), strict=False)
    except MagicError:
        return None
    found = next((m for m in cell_magics if m.name == "file"), None)
    return (found.args[0] if found.args else "") if found else None


def _container_lines(lines: list[str]) -> list[str]:
    """The %%chroot, %%unshare, %%overlay and %%cgroup lines of a cell's code."""
    return [line.strip() for line in lines[:_code_end(lines)] if _CONTAINER_LINE.match(line)]


def _printf(stdout: str, stderr: str, status: int) -> list[str]:
    lines = [f"printf '%s' {shlex.quote(stdout)}"] if stdout else []
    lines += [f"printf '%s' {shlex.quote(stderr)} >&2"] if stderr else []
    return lines + ([f"(exit {status})"] if status else [])


def shortcuts(source: str, wanted: Sequence[str], recorded: tuple[str, str, int] | None) -> tuple[
        list[Shortcut], list[str]]:
    """The shortcut answers to a task cell (each a whole cell source), and the
    shortcuts that do not apply to it, with why.  ``recorded`` is the stdout,
    stderr and exit status of the reference's run of the cell."""
    lines = source.split("\n")
    regions, answer = _answer_lines(lines)
    path = _file_magic(lines)
    made: list[Shortcut] = []
    skipped: list[str] = []
    if "empty" in wanted:
        if regions:
            end = _code_end(lines)
            empty = replace_solutions("\n".join(lines[:end]), CODE).split("\n") + lines[end:]
        else:
            empty = [line for i, line in enumerate(lines) if i not in answer]
        made.append(Shortcut("empty", "empty answer", "\n".join(empty)))
    if "lines" in wanted:
        python = bool(path and path.endswith(".py"))
        for i in answer:
            text = lines[i].strip()
            if not text or text.startswith("#"):
                continue
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            removed = lines[:i] + ([indent + "pass"] if python else []) + lines[i + 1:]
            if path is None and not _parses(removed):
                # e.g. the line that opens a container's quoted script: what follows it would run on the
                # host, line by line, before bash found the quote never closes. No student answers that.
                skipped.append(f"line {i + 1} removed: the rest is no longer valid shell, not run")
                continue
            made.append(Shortcut("lines", f"line {i + 1} removed: {text}", "\n".join(removed), line=i + 1))
    if "printf" in wanted:
        if path is not None:
            skipped.append("printf: the answer is the text of a file (%%file), not commands that print")
        elif recorded is None or not (recorded[0] or recorded[1]):
            skipped.append("printf: the reference's run of the cell printed nothing")
        else:
            echo = _printf(*recorded)
            if regions:
                first, rest = regions[0], {i for start, stop in regions[1:] for i in range(start + 1, stop)}
                body = lines[: first[0] + 1] + echo + [line for i, line in enumerate(lines[first[1]:], first[1])
                                                       if i not in rest]
            else:
                at = answer[0] if answer else _code_end(lines)
                body = [line for i, line in enumerate(lines[:at]) if i not in answer] + echo + [
                    line for i, line in enumerate(lines[at:], at) if i not in answer]
            made.append(Shortcut("printf", "printf of the recorded output", "\n".join(body)))
    if "host" in wanted:
        end = _code_end(lines)
        dropped = _container_lines(lines)
        if dropped:
            host = [line for i, line in enumerate(lines) if i >= end or not _CONTAINER_LINE.match(line)]
            made.append(Shortcut("host", f"on the host: {', '.join(dropped)} dropped", "\n".join(host)))
    return _distinct(made), skipped


def _parses(lines: list[str]) -> bool:
    """Whether a cell's shell code (magic and %%check lines aside) is valid bash (``bash -n``)."""
    code = [line for line in lines[:_code_end(lines)] if not line.lstrip().startswith("%")]
    bash = shutil.which("bash")
    if bash is None:
        return True
    done = subprocess.run([bash, "-n"], input="\n".join(code), capture_output=True, text=True)
    return done.returncode == 0


def _effective(source: str) -> str:
    """What a shortcut runs: its source without the lines that are only comments."""
    return "\n".join(line for line in source.split("\n") if not line.strip().startswith("#"))


def _distinct(made: list[Shortcut]) -> list[Shortcut]:
    """One run for shortcuts that run the same code (the first one's label stays)."""
    seen: set[str] = set()
    kept = []
    for shortcut in made:
        key = _effective(shortcut.source)
        if key not in seen:
            seen.add(key)
            kept.append(shortcut)
    return kept


# ---- running them ----------------------------------------------------------------
def check_target(target: str | None, run_student_code_on_this_machine: bool = False, jobs: int = 1) -> None:
    """Refuse, in one sentence, a target the probe cannot or may not use (``jobs`` runs at a time)."""
    if not target:
        raise ProbeError("the probe needs --target, where the shortcut answers run: --target qemu:grader runs "
                         "each on a fresh VM of its own")
    try:
        here = parse_target(target).is_local
    except TargetError as exc:
        raise ProbeError(f"--target {target}: {exc}") from None
    if here and not run_student_code_on_this_machine:
        raise ProbeError(f"--target local runs the shortcut answers (solutions with lines removed, container "
                         f"steps moved to the host) on this machine as {getpass.getuser()}; add "
                         "--run-student-code-on-this-machine to do that, or use --target qemu:grader for a "
                         "fresh VM per run")
    try:
        check_rerun_target(target, run_student_code_on_this_machine)
    except GradingError as exc:
        raise ProbeError(str(exc)) from None
    if jobs > 1 and not fresh_per_run(target):
        raise ProbeError(f"--jobs {jobs} runs shortcut answers side by side, and on {target} they would share one "
                         "machine's files (a notebook's fixed work directory, say); use --jobs 1, or a qemu: "
                         "target, which gives each run a VM of its own")


# ---- the runs ----------------------------------------------------------------
@dataclass
class _Plan:
    task: TaskProbe
    shortcut: Shortcut
    reference: dict  # the reference (on a fresh VM, cut after the last cell that checks the task)
    submission: dict  # the same, with the shortcut in the task's cell


def _task_end(cells: list[dict], start: int) -> int:
    """The index of the last cell that checks the task at ``start`` (the hidden cells below it count)."""
    end = start
    for i in range(start + 1, len(cells)):
        if is_task(cells[i]) and not is_hidden(cells[i]):
            break
        if is_hidden(cells[i]) and cells[i].get("cell_type") == "code":
            end = i
    return end


def _is_cleanup(cell: dict) -> bool:
    """A code cell that runs the ``%cleanup`` magic: the notebook's own clean-up."""
    if cell.get("cell_type") != "code":
        return False
    try:
        magics = parse_cell(multiline_text(cell.get("source")), strict=False).line_magics
    except MagicError:
        return False
    return any(magic.name == "cleanup" for magic in magics)


def _cut(nb: dict, end: int, shared: bool) -> dict:
    """The cells up to ``end``; on a ``shared`` machine, then the clean-up cells below
    (the whole notebook when it has none, since only its own later cells undo what a run made)."""
    cut = copy.deepcopy(nb)
    cleanup = [cell for cell in cut["cells"][end + 1:] if _is_cleanup(cell)] if shared else []
    if not shared or cleanup:
        cut["cells"] = cut["cells"][: end + 1] + cleanup
    return cut


def _recorded(executed: dict | None, cell_id: str) -> tuple[str, str, int] | None:
    cell = next((c for c in (executed or {}).get("cells", []) if c.get("id") == cell_id), None)
    if cell is None or cell_record(cell) is None:
        return None
    stdout, stderr = cell_streams(cell)
    status = cell_record(cell).get("exit_status")
    return stdout, stderr, status if isinstance(status, int) and 0 <= status < 256 else 0


def _machinery_error(result: dict) -> str | None:
    if result.get("error"):
        return str(result["error"])
    return next((f["message"] for f in result.get("flags", []) if f.get("kind") == RERUN_FAILED), None)


def _rerun(job: RerunJob) -> tuple[dict, dict | None]:
    shipped = rerun_submission(job)
    executed = json.loads(shipped["executed"]) if shipped.get("executed") else None
    return shipped["result"], executed


def probe(source: Path | str, target: str, *, wanted: Sequence[str] | None = None, tasks: Sequence[str] = (),
          timeout: float | None = DEFAULT_CELL_TIMEOUT, run_timeout: float | None = DEFAULT_SUBMISSION_TIMEOUT,
          jobs: int = 1, run_student_code_on_this_machine: bool = False,
          on_step: Callable[[str], None] | None = None) -> ProbeReport:
    """Run the shortcut answers of every task of ``source`` on ``target`` and grade each run.

    ``wanted`` names the shortcuts to try; by default all of them, but on a local
    target not ``host`` (a container step done on the host changes this machine)."""
    say = on_step or (lambda _text: None)
    source = Path(source)
    check_target(target, run_student_code_on_this_machine, jobs)
    try:
        problems, _, _ = check_source(read_notebook_json(source))
    except GradingError as exc:
        raise ProbeError(str(exc)) from None
    if problems:
        raise ProbeError(f"{source}: cannot be probed: {'; '.join(problems)}")
    try:
        rel = prepare(source)
    except AssignmentError as exc:
        raise ProbeError(" ".join(str(exc).split())) from None
    ref: Reference = rel.ref
    chosen = [t for t in ref.tasks if t.kind == "code" and (not tasks or t.label in tasks)]
    unknown = sorted(set(tasks) - {t.label for t in ref.tasks})
    if unknown:
        names = ", ".join(t.label for t in ref.tasks if t.kind == "code") or "none"
        raise ProbeError(f"{source}: no task is named {', '.join(unknown)} (its code tasks: {names})")
    if not chosen:
        raise ProbeError(f"{source}: has no code task to probe (a task is a cell with ### BEGIN SOLUTION, "
                         "or metadata.workshop.task)")
    started = time.monotonic()
    limits = (timeout, run_timeout)
    say(f"{source}: running the reference on {target}")
    result, executed = _rerun(RerunJob(rel.reference, str(source), rel.reference, str(source), "reference", target,
                                       *limits))
    why = _machinery_error(result)
    if why:
        raise ProbeError(f"{source}: the reference could not be run on {target}: {why}")
    points = {check.key: check.points for check in ref.checks}
    cells = rel.reference["cells"]
    index = {cell.get("id"): i for i, cell in enumerate(cells)}
    names = {cell.id: cell.name for cell in ref.cells}
    report = ProbeReport(source, target, [], runs=1)
    plans: list[_Plan] = []
    for task in chosen:
        probed = TaskProbe(task.label, names.get(task.cell_id, task.label), task.cell_id,
                           {key: points[key] for key in task.checks})
        report.tasks.append(probed)
        plans += _plan_task(probed, task, result, executed, rel.reference, index[task.cell_id], wanted, target)
    say(f"{source}: {len(plans)} shortcut answers to {len(report.tasks)} tasks")
    jobs_of = {id(plan): RerunJob(plan.reference, str(source), plan.submission, str(source), plan.shortcut.label,
                                  target, *limits) for plan in plans}
    done = 0
    with ThreadPoolExecutor(max(jobs, 1)) as pool:
        futures = [(plan, pool.submit(rerun_submission, jobs_of[id(plan)])) for plan in plans]
        for plan, future in futures:
            shipped = future.result()
            _score(plan, shipped["result"])
            done += 1
            shortcut = plan.shortcut
            outcome = shortcut.error and f"not tried: {shortcut.error}" or (
                f"{shortcut.earned:g} of {plan.task.points:g} points")
            say(f"[{done}/{len(plans)}] {plan.task.label}: {shortcut.label} → {outcome}")
    report.runs += len(plans)
    report.seconds = time.monotonic() - started
    return report


def _plan_task(probed: TaskProbe, task: RefTask, result: dict, executed: dict | None, nb: dict, at: int,
               wanted: Sequence[str] | None, target: str) -> list[_Plan]:
    if not task.checks:
        probed.problem = "the task has no checks"
        return []
    failing = [key for key in task.checks if not result["checks"].get(key, {}).get("passed")]
    if failing:
        key = failing[0]
        message = result["checks"].get(key, {}).get("message") or "it did not run"
        probed.problem = f"the reference's own solution fails {key} ({message}); its shortcuts prove nothing"
        return []
    kinds = list(wanted or SHORTCUTS)
    source = multiline_text(nb["cells"][at].get("source"))
    if wanted is None and not fresh_per_run(target):
        kinds.remove("host")
        if _container_lines(source.split("\n")):
            probed.skipped.append("host: not tried by default on a target that is not a fresh VM (a container "
                                  "step done on the host changes that machine); name it with --shortcut host, "
                                  "or use a qemu target")
    made, skipped = shortcuts(source, kinds, _recorded(executed, task.cell_id))
    probed.skipped += skipped
    probed.shortcuts = made
    # Stop after the cells that check the task; on a machine the runs share, its clean-up
    # cells follow, so that the machine is left as the next run needs it.
    reference = _cut(nb, _task_end(nb["cells"], at), shared=not fresh_per_run(target))
    plans = []
    for shortcut in made:
        submission = copy.deepcopy(reference)
        cell = submission["cells"][at]
        cell["source"] = shortcut.source
        cell["outputs"], cell["execution_count"] = [], None
        plans.append(_Plan(probed, shortcut, reference, submission))
    return plans


def _score(plan: _Plan, result: dict) -> None:
    shortcut = plan.shortcut
    why = _machinery_error(result)
    if why:
        shortcut.error = why
        return
    entries = {key: result["checks"].get(key, {}) for key in plan.task.checks}
    shortcut.passed = [key for key, entry in entries.items() if entry.get("passed")]
    shortcut.earned = sum(float(entry.get("earned") or 0) for entry in entries.values())
    shortcut.timed_out = any(f.get("kind") == "timed-out" for f in result.get("flags", []))


# ---- the terminal table -----------------------------------------------------------
def print_probe(report: ProbeReport, console=None) -> None:
    """A table of the weak checks (task, check, points, the shortcuts that passed it), and what was not probed."""
    from rich.console import Console
    from rich.table import Table

    from .reports import terminal_text

    console = console or Console(emoji=False)
    name = terminal_text(report.source.name)
    weak = report.weak
    runs = f"{report.runs} runs on {terminal_text(report.target)}, {report.seconds:.0f} s"
    if weak:
        checks = len({(w.task, w.check) for w in weak})
        tasks = len({w.task for w in weak})
        table = Table(title=f"{name}: {checks} weak check{'s' * (checks != 1)} in {tasks} task{'s' * (tasks != 1)} "
                            f"({runs})", title_justify="left")
        for column in ("task", "check", "points", "passed by"):
            table.add_column(column, overflow="fold")
        rows: dict[tuple[str, str], list[str]] = {}
        for found in weak:
            rows.setdefault((found.task, found.check), []).append(found.shortcut)
        points = {(w.task, w.check): w.points for w in weak}
        for (task, check), passed_by in rows.items():
            table.add_row(terminal_text(task), terminal_text(check), f"{points[task, check]:g}",
                          "\n".join(terminal_text(s) for s in passed_by))
        console.print(table)
    else:
        probed = sum(1 for t in report.tasks if not t.problem)
        console.print(f"[green]✔[/green] {name}: no shortcut passed a check of its {probed} probed tasks ({runs})",
                      highlight=False)
    for task in report.tasks:
        full = report.full_marks(task)
        if full:
            console.print(f"[red]✘[/red] {terminal_text(task.label)}: full marks for "
                          f"{terminal_text('; '.join(s.label for s in full))}", highlight=False, soft_wrap=True)
        if task.problem:
            console.print(f"[yellow]not probed[/yellow] {terminal_text(task.label)}: {terminal_text(task.problem)}",
                          highlight=False, soft_wrap=True)
        for shortcut in task.shortcuts:
            if shortcut.error:
                console.print(f"[yellow]not tried[/yellow] {terminal_text(task.label)}: "
                              f"{terminal_text(shortcut.label)}: {terminal_text(shortcut.error)}",
                              highlight=False, soft_wrap=True)
        for why in task.skipped:
            console.print(f"[dim]not tried[/dim] {terminal_text(task.label)}: {terminal_text(why)}",
                          highlight=False, soft_wrap=True)


__all__ = ["SHORTCUTS", "ProbeError", "ProbeReport", "Shortcut", "TaskProbe", "Weak", "check_target", "print_probe",
           "probe", "shortcuts"]
