"""Grading many submissions: in this process, in a local pool, or rerun on fresh targets.

``--rerun`` executes each submission again on a fresh target through any
``concurrent.futures``-style executor (``submit(fn, *args)`` returning futures
with ``result()``), so a Dask ``distributed.Client`` can stand in for the local
pool.  A rerun's task carries the notebooks themselves (:class:`RerunJob`) and
brings back the result and the executed notebook, so workers share no file
system with the grader; each result is stored as it arrives
(:mod:`workshop.store`) and a killed batch resumes where it stopped.  What one
submission earns is decided by :mod:`workshop.grading`.
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checks import describe_changes
from .errors import GradingError, TargetError
from .grading.copies import flag_shared_runs, run_evidence
from .grading.grade import grade_submission, task_answers
from .grading.notebook import read_notebook_json
from .grading.paths import display_path, expand_paths, student_names
from .grading.reference import Reference, load_reference, reference_of
from .grading.rerun import restore_reference, target_changes
from .grading.results import Flag, GradeResult, Report
from .store import RERUN_FAILED, ResultsStore, content_digest, result_key

OnResult = Callable[[GradeResult], None]

DEFAULT_CELL_TIMEOUT = 60.0  # seconds a rerun's cell may take (--timeout)
DEFAULT_SUBMISSION_TIMEOUT = 600.0  # seconds a whole rerun may take (--submission-timeout)
RECOMMENDED_TARGET = "qemu:grader"  # a fresh VM per submission
# What a rerun's cells may print in all: the executed notebook is held in the grader's memory.
RERUN_OUTPUT_BUDGET = 64 << 20
RERUN_PIDS = 512  # processes a local rerun may have at once (its kernel's threads included): a fork bomb stops there
NBCLIENT_GRACE = 30.0  # seconds after --timeout that a cell which ignores the interrupt is given up on


def grade(reference: Path | str, submissions: Iterable[Path | str], *, rerun: bool = False,
          target: str | None = None, jobs: int = 1, executor=None,
          timeout: float | None = DEFAULT_CELL_TIMEOUT, submission_timeout: float | None = DEFAULT_SUBMISSION_TIMEOUT,
          run_student_code_on_this_machine: bool = False, on_result: OnResult | None = None,
          out_dir: Path | str | None = None, resume: bool = False, progress=None) -> Report:
    """Grade many submissions; ``executor`` is any object with ``submit``.

    A rerun needs a ``target``; ``local`` runs students' code on this machine and
    must be asked for with ``run_student_code_on_this_machine``.  With ``out_dir``
    each rerun's result and executed notebook are stored there as they arrive
    (:mod:`workshop.store`), and ``resume`` skips the submissions already done.
    ``progress(total, done, slots)`` is a context manager whose ``finished(failed)``
    is called per rerun.  Submissions that share kernel sessions or records with
    others are flagged."""
    if rerun:
        check_rerun_target(target, run_student_code_on_this_machine)
        sweep_leftovers()
        batch = RerunBatch(reference, target, (timeout, submission_timeout), out_dir, resume)
        results = batch.run(expand_paths(submissions), executor, jobs, on_result, progress)
        ref = batch.ref
    else:
        ref = load_reference(reference)
        results = _grade_recorded(ref, reference, expand_paths(submissions), executor, jobs, on_result)
    pairs = flag_shared_runs(results)
    return Report(ref, results, target if rerun else None, pairs)


def _grade_recorded(ref: Reference, reference: Path | str, paths: list[Path], executor, jobs: int,
                    on_result: OnResult | None) -> list[dict]:
    """Grade submissions from their own runs: in this process, or in a pool of processes."""
    names = student_names(paths)
    if executor is None and jobs <= 1:
        graded = (grade_submission(ref, path, name) for path, name in zip(paths, names, strict=True))
        return _collect(graded, on_result)
    own = executor is None
    executor = executor or _local_pool(False, jobs)
    try:
        ref_path = str(Path(reference).resolve())
        futures = [executor.submit(_grade_path, ref_path, str(p), n) for p, n in zip(paths, names, strict=True)]
        return _collect((future.result() for future in futures), on_result)
    finally:
        if own:
            executor.shutdown()


def check_rerun_target(target: str | None, run_student_code_on_this_machine: bool = False) -> None:
    """Refuse a rerun target before any submission is touched: none, a bad spec, or
    this machine when that was not asked for by name."""
    if not target:
        raise GradingError(f"--rerun needs --target, where the submissions run again: --target {RECOMMENDED_TARGET} "
                           "runs each one on a fresh VM of its own, which nothing of a submission outlives")
    from .targets import parse_target  # only reruns need the targets

    try:
        here = parse_target(target).is_local
    except TargetError as exc:
        raise GradingError(f"--target {target}: {exc}") from None
    if not here:
        return
    if not run_student_code_on_this_machine:
        raise GradingError(f"--target local runs every student's code on this machine as {getpass.getuser()}; "
                           "add --run-student-code-on-this-machine to do that, or use "
                           f"--target {RECOMMENDED_TARGET} for a fresh VM per submission")
    from .kernel_cgroup import KernelCgroup

    why = KernelCgroup.unavailable()
    if why:
        raise GradingError(f"--target local needs a cgroup to stop everything a submission starts, but {why}; "
                           f"use --target {RECOMMENDED_TARGET}")


def sweep_leftovers() -> int:
    """Kill what the reruns of a grader that was killed left running; how many reruns' worth."""
    from .kernel_cgroup import KernelCgroup

    return KernelCgroup.sweep()


def _collect(results: Iterable[GradeResult], on_result: OnResult | None) -> list[GradeResult]:
    """The results in order, each reported as soon as it is there."""
    collected = []
    for result in results:
        collected.append(result)
        if on_result:
            on_result(result)
    return collected


def _local_pool(rerun: bool, jobs: int):
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    # Reruns wait on kernels (threads suffice); plain grading is CPU work.
    return ThreadPoolExecutor(max(jobs, 1)) if rerun else ProcessPoolExecutor(max(jobs, 1))


def _grade_path(ref_path: str, path: str, student: str, _cache: dict = {}) -> GradeResult:  # noqa: B006
    # The cache lives as long as the worker process: the reference is read once per worker.
    ref = _cache.get(ref_path)
    if ref is None:
        ref = _cache[ref_path] = load_reference(ref_path)
    return grade_submission(ref, path, student)


# ---- reruns: the grader's side -----------------------------------------------------
class RerunBatch:
    """The grader's side of a rerun batch: read each submission once (an unreadable one
    is graded here and never shipped), skip what the store holds (``resume``), hand
    the rest to an executor, and store each result the moment it arrives."""

    def __init__(self, reference: Path | str, target: str, limits: tuple[float | None, float | None],
                 out_dir: Path | str | None = None, resume: bool = False):
        if resume and out_dir is None:
            raise GradingError("--resume continues the batch stored in --out DIR; give the --out of that batch")
        self.ref_name = str(reference)
        self.ref_nb = read_notebook_json(Path(reference))
        self.ref = reference_of(self.ref_nb, Path(reference))
        self.target, self.limits, self.resume = target, limits, resume
        self.store = ResultsStore(out_dir) if out_dir is not None else None
        # what a stored result depends on, besides the submission itself
        self.options = {"reference": content_digest(self.ref_nb), "target": target, "timeout": limits[0],
                        "submission_timeout": limits[1]}

    def run(self, paths: Sequence[Path], executor, jobs: int, on_result: OnResult | None, progress) -> list[GradeResult]:
        """The results of ``paths``, in their order."""
        results: dict[str, GradeResult] = {}
        keys, todo = [], []
        for path, name in zip(paths, student_names(paths), strict=True):
            key, known, job = self._plan(path, name)
            keys.append(key)
            if job is None:
                results[key] = known
                if on_result:
                    on_result(known)
            else:
                todo.append((key, job))
        own = executor is None
        executor = executor or _local_pool(True, jobs)
        watch = progress(len(keys), len(keys) - len(todo), _slots(executor, jobs)) if progress else None
        try:
            with watch or contextlib.nullcontext():
                for key, result in self._execute(executor, todo):
                    results[key] = result
                    if on_result:
                        on_result(result)
                    if watch is not None:
                        watch.finished(failed=_failed(result))
        finally:
            if own:
                executor.shutdown(cancel_futures=True)
        return [self._stored(key, results[key]) for key in keys]

    def _plan(self, path: Path, name: str) -> tuple[str, GradeResult | None, RerunJob | None]:
        """The key of a submission, and its result when known already (unreadable, or
        done and resumed), else the job that reruns it."""
        shown = display_path(Path(path).absolute())
        try:
            nb = read_notebook_json(Path(path))
        except GradingError as exc:
            key = result_key("unreadable", shown, name, str(exc), self.options)
            result = grade_submission(self.ref, path, name) | {"error": str(exc), "rerun": True}
            if self.store:
                self.store.put(key, result)
            return key, result, None
        key = result_key("rerun", shown, name, content_digest(nb), self.options)
        done = self.store.done(key) if self.store and self.resume else None
        if done is not None:
            return key, done, None
        return key, None, RerunJob(self.ref_nb, self.ref_name, nb, shown, name, self.target, *self.limits)

    def _execute(self, executor, todo: list[tuple[str, RerunJob]]) -> Iterator[tuple[str, GradeResult]]:
        """Submit every job; yield ``(key, result)`` as each finishes, stored first."""
        dask = _is_dask(executor)
        futures = {}
        for key, job in todo:
            if dask:  # a lost worker's task runs again on another one
                future = executor.submit(rerun_submission, job, key=f"rerun_submission-{key[:16]}-"
                                         f"{secrets.token_hex(4)}", retries=RETRIES, pure=False)
            else:
                future = executor.submit(rerun_submission, job)
            futures[future] = (key, job)
        for future in _as_completed(futures, dask):
            key, job = futures.pop(future)
            try:
                shipped = future.result()
            except Exception as exc:  # the worker died once too often, or could not run the task at all
                shipped = {"result": failed_rerun(job, f"{type(exc).__name__}: {exc}"), "executed": None,
                           "timings": {}, "worker": None}
            if self.store:
                self.store.put(key, shipped["result"], shipped["executed"], student=job.student,
                               timings=shipped["timings"], worker=shipped["worker"])
            yield key, shipped["result"]

    def _stored(self, key: str, result: GradeResult) -> GradeResult:
        """The result as the store holds it (the reports come from the store), or as it came."""
        entry = self.store.get(key) if self.store else None
        return entry["result"] if entry else result


def _failed(result: GradeResult) -> bool:
    return bool(result.get("error")) or any(f["kind"] in (RERUN_FAILED, "timed-out") for f in result["flags"])


def _is_dask(executor) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed"


def _slots(executor, jobs: int) -> int:
    """How many reruns can run at once."""
    if _is_dask(executor):
        return sum(w.get("nthreads", 1) for w in executor.scheduler_info()["workers"].values())
    return max(jobs, 1)


def _as_completed(futures, dask: bool):
    if dask:
        from distributed import as_completed

        return as_completed(list(futures))
    from concurrent.futures import as_completed

    return as_completed(list(futures))


# ---- reruns: what goes to a worker and what comes back ------------------------------
RETRIES = 2  # a task whose worker was lost (or that failed outright) runs again elsewhere, this many times


@dataclass
class RerunJob:
    """One submission's rerun as plain data: everything a worker needs travels with
    it (notebooks as JSON, not paths), so workers share no file system with the grader."""

    reference: dict  # the reference notebook
    reference_name: str  # its path on the grader, for messages and reports
    submission: dict  # the student's notebook, already read (and refused if unreadable) by the grader
    path: str  # the submission's path on the grader, for the report
    student: str
    target: str
    timeout: float | None = DEFAULT_CELL_TIMEOUT
    submission_timeout: float | None = DEFAULT_SUBMISSION_TIMEOUT


def rerun_submission(job: RerunJob, workdir: str | None = None) -> dict:
    """Execute a submission again and grade the fresh run, on whichever machine runs
    this: ``{"result", "executed" (the notebook's JSON text), "timings", "worker"}``.
    A failure of the machinery (a VM that does not boot, a kernel that does not
    start) is a flag on that submission, and no points, not the end of the batch."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        result, executed = _rerun_submission(job, workdir, timings)
    except Exception as exc:
        result, executed = failed_rerun(job, f"{type(exc).__name__}: {exc}"), None
    timings["total"] = round(time.monotonic() - started, 3)
    return {"result": result, "executed": executed, "timings": timings, "worker": socket.gethostname()}


def failed_rerun(job: RerunJob, why: str) -> GradeResult:
    """The result of a rerun that could not be made: the student's own run, every check zeroed, and why."""
    result = _grade_notebook(reference_of(job.reference, Path(job.reference_name)), job.submission, job.path,
                             job.student)
    for entry in result["checks"].values():
        entry.update(passed=False, earned=0.0, status="invalid", message="the rerun failed")
    result.update(total=0.0, rerun=True)
    result["flags"].append({"kind": RERUN_FAILED, "cell": None, "message": f"the rerun failed: {why}"})
    return result


def _grade_notebook(ref: Reference, nb: dict, path: str, student: str) -> GradeResult:
    """Grade a notebook held in memory, named in the report by its path on the grader."""
    return grade_submission(ref, path, student, notebook=nb, name=path)


def _rerun_submission(job: RerunJob, workdir: str | None, timings: dict[str, float]) -> tuple[GradeResult, str | None]:
    """Execute a submission again (with the reference's checks, visible and
    hidden, its locked and hidden cells restored, the target fixed, in a fresh empty directory, within time limits,
    in a cgroup that is emptied afterwards) and grade the fresh run; ``timings``
    gets the seconds its target took to start, the run (the kernel's start
    included), the grading and the teardown."""
    from .kernel_cgroup import KernelCgroup
    from .runner import run_notebook  # nbclient: plain grading never loads it

    ref = reference_of(job.reference, Path(job.reference_name))
    nb = copy.deepcopy(job.submission)
    target, limits = job.target, (job.timeout, job.submission_timeout)
    evidence = run_evidence(nb)  # of the student's own run: copies are found by these
    answers = task_answers(ref, nb)  # the student's own text, before the reference's checks go back in
    refused = target_changes(ref, nb, target)
    vouched = restore_reference(ref, nb)
    sweep_leftovers()
    here = _is_local(target)
    contain = here or KernelCgroup.unavailable() is None
    clock = time.monotonic()
    with _scratch("workshop-rerun-", workdir) as tmp, _scratch("workshop-rerun-cwd-", None) as cwd, \
            fresh_target(target) as job_target:
        timings["vm_start"] = round(time.monotonic() - clock, 4)
        prepared = tmp / "submission.ipynb"
        prepared.write_text(json.dumps(nb), encoding="utf-8")
        clock = time.monotonic()
        run = run_notebook(prepared, out_dir=tmp / "out", target=job_target, timeout=limits[0], allow_errors=True,
                           workdir=cwd, lock_target=True, run_timeout=limits[1], contain=contain,
                           pids_max=RERUN_PIDS if here else None, output_budget=RERUN_OUTPUT_BUDGET,
                           vouched_cells=vouched)
        timings["run"] = round(time.monotonic() - clock, 4)
        clock = time.monotonic()
        executed = run.executed
        result = grade_submission(ref, run.out_path, job.student, score_hidden=True, notebook=executed,
                                  name=f"the rerun of {job.path}")
        timings["grade"] = round(time.monotonic() - clock, 4)
        changes = _system_changes(job_target)
        clock = time.monotonic()
    timings["teardown"] = round(time.monotonic() - clock, 4)  # the VM stopped and deleted, the scratch removed
    sweep_leftovers()  # again: a worker killed while this ran (its kernel orphaned) is found as soon as possible
    if executed:  # which cells print something new on every run: copies are told from honest runs by those
        evidence["rerun_outputs"] = run_evidence(json.loads(executed))["outputs"]
    result.update(path=job.path, rerun=True, rerun_target=job_target, evidence=evidence, answers=answers)
    changes, vm_limits = changes or ([], [])
    result["flags"] += refused + _timeout_flags(ref, run, limits) + _tamper_flags(result, changes)
    run.limits_hit += vm_limits
    result["flags"] += [{"kind": "resource-limit", "cell": None, "message": f"the submission's code ran into a "
                         f"limit of the rerun: {hit}"} for hit in run.limits_hit]
    if run.error and not (run.timed_out or run.stuck or run.limits_hit):  # what is left is the machinery's
        result["flags"].append({"kind": RERUN_FAILED, "cell": None, "message": run.error})
    return result, executed


def _is_local(target: str | None) -> bool:
    """Whether ``target`` is the grader's own machine, unconfined."""
    from .targets import kind_class

    return kind_class(target).is_local


def _system_changes(target: str | None) -> tuple[list[str], list[str]] | None:
    """What the student's code changed in a sealed VM's system, and the VM's limits it ran into,
    seen by its agent after the last cell (None: the target has no such agent)."""
    from .targets import kind_class, parse_target

    if not target or not kind_class(target).fresh_per_run:
        return None
    return parse_target(target).system_changes()


def _tamper_flags(result: GradeResult, changes: list[str] | None) -> list[Flag]:
    """A flag for changes the agent saw after the last check (those before a check are flagged on its cell)."""
    if not changes:
        return []
    flagged = " ".join(f["message"] for f in result["flags"] if f["kind"] == "system-tampered")
    new = [change for change in changes if change not in flagged]
    if not new:
        return []
    return [{"kind": "system-tampered", "cell": None,
             "message": describe_changes(new) + "; seen after the last cell, so no check ran on it"}]


def _timeout_flags(ref, run, limits: tuple[float | None, float | None]) -> list[Flag]:
    names = {c.id: c.name for c in ref.cells}  # named as every other flag names the reference's cells
    flags = [{"kind": "timed-out", "cell": names.get(cell.cell_id, cell.name),
              "message": f"the cell timed out (the limit for one cell is {limits[0]:g} s, --timeout)"}
             for cell in run.cells if limits[0] and cell.record and cell.record.get("timed_out")]
    if run.stuck and limits[0]:
        stuck = next((c for c in run.cells if c.cell_id and c.cell_id == run.stuck_cell), None)
        flags.append({"kind": "timed-out", "cell": names.get(stuck.cell_id, stuck.name) if stuck else None,
                      "message": f"the cell ran past the limit for one cell ({limits[0]:g} s, --timeout) and did not "
                                 f"stop when interrupted; it was given up {NBCLIENT_GRACE:g} s later and the cells "
                                 "after it did not run"})
    if run.timed_out:
        flags.append({"kind": "timed-out", "cell": None,
                      "message": f"the rerun was stopped after {limits[1]:g} s, the limit for one submission "
                                 "(--submission-timeout); the cells after that did not run"})
    return flags


@contextlib.contextmanager
def _scratch(prefix: str, parent: str | None) -> Iterator[Path]:
    """A fresh directory, removed afterwards without crossing into anything a cell mounted in it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        _unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


def _unmount_under(path: Path) -> None:
    """Detach mounts a cell left under ``path`` (a bind mount of / there must not be emptied)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    root = str(path.resolve())
    points = [line.split()[4].replace("\\040", " ") for line in lines]
    for point in sorted((p for p in points if p == root or p.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def fresh_per_run(target: str | None) -> bool:
    """Whether every rerun on ``target`` gets a machine of its own (see :func:`fresh_target`);
    on other targets what a run leaves outside its working directory is there for the next."""
    from .targets import kind_class

    return bool(target) and kind_class(target).fresh_per_run


@contextlib.contextmanager
def fresh_target(target: str | None) -> Iterator[str | None]:
    """The target one rerun uses.  On a kind that gives each rerun a machine of its
    own (``qemu:NAME``: a new VM restored from the VM snapshot) that machine, removed
    afterwards, so no submission sees what another left behind; other targets are used as they are."""
    if not fresh_per_run(target):
        yield target
        return
    from .targets import parse_target

    with parse_target(target).fresh(_say_notices) as spec:
        yield spec


_NOTICES_SAID: set[str] = set()


def _say_notices(text: str) -> None:
    """What a grader must know about its fresh VMs (no KVM, and why), once per process, on stderr;
    the rest of a VM's start-up steps are not for a batch's log."""
    from .text import Notice

    if isinstance(text, Notice) and text not in _NOTICES_SAID:
        _NOTICES_SAID.add(text)
        print(f"workshop: {text}", file=sys.stderr, flush=True)


# ---- executors --------------------------------------------------------------------
def dask_executor(spec: str):
    """A Dask ``distributed.Client`` for ``dask:ADDRESS``: it has the executor's
    ``submit`` and its futures' ``result``, so reruns go to the cluster's workers.
    The workers need workshop installed (and for ``qemu:`` targets the VM image,
    built on a worker's first use); the notebooks travel with the tasks."""
    kind, _, address = spec.partition(":")
    if kind != "dask" or not address:
        raise GradingError(f"--executor {spec}: write dask:ADDRESS, e.g. dask:tcp://scheduler:8786")
    try:
        from distributed import Client  # an optional dependency
    except ImportError:
        raise GradingError("--executor dask:... needs Dask's distributed package: pip install distributed") from None
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise GradingError(f"--executor {spec}: cannot reach the Dask scheduler ({exc}); is it running?") from None


__all__ = [
    "DEFAULT_CELL_TIMEOUT", "DEFAULT_SUBMISSION_TIMEOUT", "RerunBatch", "RerunJob", "check_rerun_target",
    "dask_executor", "failed_rerun", "fresh_per_run", "fresh_target", "grade", "rerun_submission", "sweep_leftovers",
]
