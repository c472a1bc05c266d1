"""Headless execution of notebooks with the workshop kernel (nbclient), and their checks' results."""

from __future__ import annotations

import copy
import os
import re
import shlex
import signal
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from . import quick_nbformat  # noqa: F401 (first: it makes importing nbformat quick)

# isort: split
import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .cell import cell_name
from .errors import GradingError, NoChecksError, NotebookError, TargetError
from .grading.grade import grade_submission
from .grading.notebook import check_notebook
from .grading.paths import display_path
from .grading.reference import Reference, reference_of
from .kernel_cgroup import KernelCgroup
from .records import cell_record
from .targets import parse_target
from .tasks import VOUCHED


@dataclass
class CellResult:
    index: int  # position among all the notebook's cells, from 0
    cell_id: str | None
    status: str  # "ok", "error", "not run"
    record: dict | None = None
    number: int = 0  # among the code cells, from 1
    error: str = ""  # why it failed: the kernel's error and the last line it wrote on stderr

    @property
    def name(self) -> str:
        return cell_name(self.number, self.cell_id)


@dataclass
class CheckResult:
    key: str  # "<cell label>:<check name>"
    cell_index: int
    passed: bool
    status: str  # passed, failed, missing (the cell did not run), invalid
    message: str
    command: str = ""
    expected: str = ""
    got: str = ""
    points: float = 1.0
    cell: str = ""  # the cell's name: "cell 3 (id 1f0c2a9e)"
    name: str = ""  # the check's name within its cell


@dataclass
class NotebookResult:
    path: Path
    out_path: Path | None
    cells: list[CellResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0
    timed_out: bool = False  # stopped by ``run_timeout``
    stuck: bool = False  # a cell outlived its timeout and the interrupt: stopped by nbclient's limit
    stuck_cell: str | None = None  # that cell's id
    limits_hit: list[str] = field(default_factory=list)  # the cgroup's limits the notebook's processes reached
    executed: str | None = field(default=None, repr=False)  # the executed notebook's JSON text, as written

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and all(c.status != "error" for c in self.cells)
            and all(c.passed for c in self.checks)
        )

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def failed_cells(self) -> list[CellResult]:
        return [c for c in self.cells if c.status == "error"]


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        nb = nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such file") from None
    except Exception as exc:  # nbformat raises many kinds for bad JSON
        raise NotebookError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None
    for key in ("kernelspec", "workshop"):
        if not isinstance(nb.metadata.get(key, {}), dict):
            raise NotebookError(f"{path}: metadata.{key} is not an object; fix or remove it")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel and kernel != "workshop":
        raise NotebookError(
            f"{path}: written for the '{kernel}' kernel, not 'workshop'; "
            "pick the Workshop (bash) kernel in the notebook first"
        )
    return nb


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _give_cells_ids(nb: nbformat.NotebookNode) -> None:
    """Notebooks older than nbformat 4.5 have no cell ids; records and checks need them."""
    from nbformat.v4.nbbase import random_cell_id

    if nb.get("nbformat_minor", 0) < 5:
        nb["nbformat_minor"] = 5
    for cell in nb.cells:
        if not cell.get("id"):
            cell["id"] = random_cell_id()


def run_notebook(
    path: Path,
    out_dir: Path | None = None,
    target: str | None = None,
    timeout: float | None = None,
    on_cell=None,
    allow_errors: bool = False,
    workdir: Path | None = None,
    *,
    lock_target: bool = False,
    run_timeout: float | None = None,
    contain: bool = False,
    pids_max: int | None = None,
    output_budget: int | None = None,
    vouched_cells: Collection[int] | None = None,
) -> NotebookResult:
    """Execute one notebook; write it to out_dir (or next to it as *.out.ipynb).

    Cells run in ``workdir`` (default: the notebook's folder).  With
    ``allow_errors`` every cell runs even after one fails (as a grader re-run
    wants); otherwise execution stops at the first failing cell, as
    ``nbconvert --execute`` does.  Check results are read from the records.

    For runs of code nobody vouches for (grading reruns): ``lock_target`` fixes
    the target (``%target`` fails, notebook metadata is ignored), ``run_timeout``
    stops the whole run after that many seconds, and ``contain`` starts the
    kernel in a cgroup of its own that is emptied (everything in it killed)
    before the executed notebook is written, and removed; ``pids_max`` caps
    the processes in it (a fork bomb), and ``limits_hit`` says when it was reached;
    ``output_budget`` stops the run once its cells have printed that many characters
    in all (the executed notebook is held in memory while it runs), also in ``limits_hit``.
    ``vouched_cells`` (indexes of cells): every other cell runs isolated, in a subshell that
    hands the next cells only data (its functions, aliases and traps die with it).
    """
    started = time.monotonic()
    nb = read_notebook(path)
    _give_cells_ids(nb)
    source = copy.deepcopy(nb)  # the checks as written, before any output
    env = _kernel_env(path, nb, target, timeout, lock_target, workdir or path.parent)
    if vouched_cells is not None:
        env["WORKSHOP_ISOLATE_CELLS"] = "1"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    result = NotebookResult(path=path, out_path=None)

    cell_executed = _CellExecuted(code_cells, on_cell, output_budget)

    cgroup = KernelCgroup.create(pids_max=pids_max) if contain else None
    try:
        metadata = CellMetadata(vouched_cells)
        client = NotebookClient(
            nb,
            kernel_name="workshop",
            allow_errors=allow_errors,
            resources={"metadata": {"path": str(workdir or path.parent)}},
            on_cell_execute=lambda cell, cell_index: metadata.before(client, cell, cell_index),
            on_cell_executed=cell_executed,
            timeout=timeout + 30 if timeout else None,  # the kernel stops a cell itself after ``timeout``
            kernel_manager_class=_manager_in(cgroup) if cgroup else AsyncKernelManager,
        )
        result.error, result.timed_out = _execute_within(client, env, run_timeout, cgroup)
        if result.error and result.error.startswith(OutputBudgetExceeded.PREFIX):
            result.limits_hit.append(result.error[len(OutputBudgetExceeded.PREFIX):])
        result.stuck = result.error is not None and result.error.startswith(CellTimeoutError.__name__)
        result.stuck_cell = metadata.cell.get("id") if result.stuck and metadata.cell else None
        if cgroup:
            result.limits_hit += cgroup.limits_hit()
            cgroup.kill()  # nothing the notebook started may still write when its output is read
    finally:
        if cgroup:
            cgroup.remove()
    result.cells = _cell_results(nb)
    if result.error is None:
        # with allow_errors nothing raises: a target that could not be reached shows as an error output
        result.error = _target_error(code_cells)
    result.out_path, result.executed = _write_executed(nb, path, out_dir or path.parent)
    result.checks = notebook_checks(source, path, result.executed, result.out_path)
    result.duration = time.monotonic() - started
    return result


class CellMetadata:
    """Sends each cell's id and ``workshop`` metadata with its execute request (as
    JupyterLab sends the id), so that its record names the cell and a task cell's
    badge shows that it is a task, and its points."""

    def __init__(self, vouched: Collection[int] | None = None) -> None:
        self.cell: dict | None = None
        self.vouched = frozenset(vouched or ())
        self.index: int | None = None

    def before(self, client: NotebookClient, cell: dict, index: int | None = None) -> None:
        self.cell, self.index = cell, index
        session = client.kc.session if client.kc is not None else None
        if session is None or getattr(session, "_workshop_cell_metadata", None) is self:
            return
        send = session.msg

        def msg(msg_type, content=None, parent=None, header=None, metadata=None):
            if msg_type == "execute_request" and self.cell is not None:
                metadata = {**(metadata or {}), **self.request_metadata(self.cell)}
                if self.index in self.vouched:
                    metadata[VOUCHED] = True
            return send(msg_type, content, parent, header, metadata)

        session.msg = msg
        session._workshop_cell_metadata = self

    @staticmethod
    def request_metadata(cell: dict) -> dict:
        found: dict = {"cellId": cell["id"]} if isinstance(cell.get("id"), str) else {}
        workshop = (cell.get("metadata") or {}).get("workshop")
        if isinstance(workshop, dict):
            found["workshop"] = dict(workshop)
        return found


def _kernel_env(path: Path, nb: nbformat.NotebookNode, target: str | None, timeout: float | None,
                lock_target: bool = False, workdir: Path | None = None) -> dict:
    """The kernel's environment: where cells run and their timeout travel as variables."""
    env = dict(os.environ)
    spec = target if lock_target else target or nb.metadata.get("workshop", {}).get("target")
    if lock_target and not spec:
        raise NotebookError(f"{path}: a run with a fixed target needs --target")
    if spec:
        try:
            parse_target(spec)  # fail now, naming where the spec came from
        except TargetError as exc:
            where = "--target" if target else "metadata.workshop.target"
            raise NotebookError(f"{path}: {where} {spec}: {exc}") from None
        env["WORKSHOP_TARGET"] = spec
    env.pop("JPY_SESSION_NAME", None)
    if timeout:
        env["WORKSHOP_TIMEOUT"] = str(timeout)
    if lock_target:
        env["WORKSHOP_TARGET_LOCKED"] = "1"
        env.pop("OLDPWD", None)  # `cd -` must not lead back to where the grader was
        if workdir:
            env["PWD"] = str(Path(workdir).resolve())
    return env


def _execute_within(client: NotebookClient, env: dict, run_timeout: float | None,
                    cgroup: KernelCgroup | None) -> tuple[str | None, bool]:
    """Run every cell, stopping the kernel (and all it started) after ``run_timeout``
    seconds; why the run stopped early, or None, and whether the time ran out."""
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        if cgroup:
            cgroup.kill()
        else:
            _kill_kernel(client)

    timer = threading.Timer(run_timeout, stop) if run_timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        error = _execute(client, env)
    except Exception:
        if not stopped.is_set():
            raise
        error = None
    finally:
        if timer:
            timer.cancel()
    if stopped.is_set():
        return f"stopped after {run_timeout:g} s, the time limit for the whole notebook", True
    return error, False


def _kill_kernel(client: NotebookClient) -> None:
    """Kill the kernel's process group (when there is no cgroup to kill it all)."""
    provisioner = getattr(client.km, "provisioner", None) if client.km else None
    pgid = getattr(provisioner, "pgid", None)
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


class _CellExecuted:
    """nbclient's hook after each cell: the record names its cell, progress is told, and the
    output budget is kept."""

    def __init__(self, code_cells: list, on_cell, output_budget: int | None):
        self.code_cells, self.on_cell, self.budget = code_cells, on_cell, output_budget
        self.printed = 0

    def __call__(self, cell, cell_index, execute_reply) -> None:
        # The messaging protocol gives the kernel no cell id under nbclient:
        # the runner knows it, so the record names its cell.
        record = cell_record(cell)
        if record is not None and not record.get("cell_id") and cell.get("id"):
            record["cell_id"] = cell.get("id")
        if self.on_cell:
            self.on_cell(cell, len(self.code_cells))
        if self.budget:
            self.printed += _output_size(cell)
            if self.printed > self.budget:
                number = self.code_cells.index(cell) + 1 if cell in self.code_cells else "?"
                raise OutputBudgetExceeded(f"its cells printed more than {self.budget >> 20} MiB in all (the limit "
                                           f"of a rerun); the run was stopped after cell {number}")


class OutputBudgetExceeded(Exception):
    """A run's cells printed more than its ``output_budget``."""

    PREFIX = "output budget: "


def _output_size(cell) -> int:
    """Characters a cell's outputs hold (text and every MIME bundle's values)."""
    size = 0
    for output in cell.get("outputs", []):
        text = output.get("text", "")
        size += len(text) if isinstance(text, str) else sum(map(len, text))
        for value in (output.get("data") or {}).values():
            size += len(value) if isinstance(value, str) else len(str(value))
    return size


def _execute(client: NotebookClient, env: dict) -> str | None:
    """Run every cell; why the run stopped early, or None."""
    try:
        client.execute(env=env)
    except OutputBudgetExceeded as exc:
        return OutputBudgetExceeded.PREFIX + str(exc)
    except CellExecutionError as exc:
        error = _ANSI.sub("", getattr(exc, "evalue", "") or str(exc).strip().splitlines()[-1])
        return error or "a cell failed"
    except (CellTimeoutError, DeadKernelError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _cell_results(nb: nbformat.NotebookNode) -> list[CellResult]:
    results = []
    code_cells = [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    for number, (index, cell) in enumerate(code_cells, 1):
        record = cell_record(cell)
        status = "not run" if record is None else record.get("status", "ok")
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            status = "error"  # an error the kernel raised before it could make a record (a bad magic line)
        error = _why_failed(cell, record) if status == "error" else ""
        results.append(CellResult(index, cell.get("id"), status, record, number, error))
    return results


def _why_failed(cell: dict, record: dict | None) -> str:
    """The kernel's error message for a failed cell, and the last line it wrote on stderr."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    why = _ANSI.sub("", str(errors[-1].get("evalue") or errors[-1].get("ename") or "")) if errors else ""
    if not why and record is not None:
        why = f"exit status {record.get('exit_status')}"
    stderr = "".join(o.get("text", "") for o in cell.get("outputs", [])
                     if o.get("output_type") == "stream" and o.get("name") == "stderr")
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if last and last not in why:
        why = f"{why}; stderr: {last[:200]}" if why else f"stderr: {last[:200]}"
    return why or "failed"


def _target_error(code_cells: list) -> str | None:
    """The message of the first TargetError a cell showed, or None."""
    for cell in code_cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and output.get("ename") == "TargetError":
                return output.get("evalue", "the target could not be used")
    return None


def _write_executed(nb: nbformat.NotebookNode, path: Path, out_dir: Path) -> tuple[Path, str]:
    """Where the executed notebook was written, and its text (as ``nbformat.write`` writes it)."""
    beside = out_dir.resolve() == path.resolve().parent  # never overwrite the source
    text = nbformat.writes(nb)
    text += "" if text.endswith("\n") else "\n"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        out_path = out_dir / (path.stem + (".out.ipynb" if beside else ".ipynb"))
        out_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NotebookError(f"cannot write the executed notebook to {out_dir}: {exc.strerror or exc}") from None
    return out_path, text


# ---- a kernel started in a cgroup --------------------------------------------------
def _manager_in(cgroup: KernelCgroup) -> type[AsyncKernelManager]:
    """A kernel manager whose kernel starts inside ``cgroup``, so do all its descendants."""

    join = " && ".join(f"echo $$ > {shlex.quote(str(path / 'cgroup.procs'))}" for path in cgroup.paths)

    class ContainedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return ["/bin/sh", "-c", f'{join} && exec "$@"', "sh", *cmd]

    return ContainedKernelManager


def notebook_checks(source: dict, path: Path, executed: str, out_path: Path) -> list[CheckResult]:
    """Grade an executed notebook against its own source's checks, both held in memory: ``source``
    as read from ``path``, ``executed`` (its JSON text) as written to ``out_path`` (the paths name them in messages)."""
    try:
        ref: Reference = reference_of(check_notebook(source, display_path(path)), path)
    except NoChecksError:
        return []
    except GradingError as exc:
        raise NotebookError(str(exc)) from None
    # this run had every check of its source
    graded = grade_submission(ref, out_path, score_hidden=True, notebook=executed)
    index = {cell.id: cell.index for cell in ref.cells}
    results = []
    for check in ref.checks:
        entry = graded["checks"][check.key]
        results.append(CheckResult(
            key=check.key,
            cell_index=index[check.cell_id],
            passed=entry["passed"],
            status=entry["status"],
            message=entry["message"],
            command=check.command,
            expected=entry["expected"],
            got=entry["got"],
            points=check.points,
            cell=check.cell,
            name=check.name,
        ))
    return results
