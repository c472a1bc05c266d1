"""Grading many submissions: in this process, in a local pool, or rerun on fresh targets.

``--rerun`` executes each submission again on a fresh target through any
``concurrent.futures``-style executor (``submit(fn, *args)`` returning futures
with ``result()``), so a Dask ``distributed.Client`` can stand in for the local
pool.  What one submission earns is decided by :mod:`workshop.grading`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from .errors import GradingError, TargetError
from .grading import (
    Report,
    expand_paths,
    flag_shared_runs,
    grade_submission,
    load_reference,
    read_notebook_json,
    restore_reference,
    run_evidence,
    student_names,
    target_changes,
    task_answers,
)

OnResult = Callable[[dict], None]

DEFAULT_CELL_TIMEOUT = 60.0  # seconds a rerun's cell may take (--timeout)
DEFAULT_SUBMISSION_TIMEOUT = 600.0  # seconds a whole rerun may take (--submission-timeout)
RECOMMENDED_TARGET = "qemu:grader"  # a fresh VM per submission


def grade(reference: Path | str, submissions: Iterable[Path | str], *, rerun: bool = False,
          target: str | None = None, jobs: int = 1, executor=None,
          timeout: float | None = DEFAULT_CELL_TIMEOUT, submission_timeout: float | None = DEFAULT_SUBMISSION_TIMEOUT,
          run_student_code_on_this_machine: bool = False, on_result: OnResult | None = None) -> Report:
    """Grade many submissions; ``executor`` is any object with ``submit``.

    A rerun needs a ``target``; ``local`` runs students' code on this machine and
    must be asked for with ``run_student_code_on_this_machine``.  Submissions
    that share kernel sessions or records with others are flagged."""
    ref = load_reference(reference)
    if rerun:
        check_rerun_target(target, run_student_code_on_this_machine)
        sweep_leftovers()
    paths = expand_paths(submissions)
    names = student_names(paths)
    if not rerun and executor is None and jobs <= 1:
        graded = (grade_submission(ref, path, name) for path, name in zip(paths, names, strict=True))
        results = _collect(graded, on_result)
    else:
        own = executor is None
        if own:
            executor = _local_pool(rerun, jobs)
        try:
            limits = (timeout, submission_timeout)
            futures = _submit_all(executor, str(Path(reference).resolve()), paths, names, rerun, target, limits)
            results = _collect((future.result() for future in futures), on_result)
        finally:
            if own:
                executor.shutdown()
    flag_shared_runs(results)
    return Report(ref, results, target if rerun else None)


def check_rerun_target(target: str | None, run_student_code_on_this_machine: bool = False) -> None:
    """Refuse a rerun target before any submission is touched: none, a bad spec, or
    this machine when that was not asked for by name."""
    if not target:
        raise GradingError(f"--rerun needs --target, where the submissions run again: --target {RECOMMENDED_TARGET} "
                           "runs each one on a fresh VM of its own, which nothing of a submission outlives")
    from .targets import parse_target  # only reruns need the targets

    try:
        kind = parse_target(target).kind
    except TargetError as exc:
        raise GradingError(f"--target {target}: {exc}") from None
    if kind != "local":
        return
    if not run_student_code_on_this_machine:
        raise GradingError(f"--target local runs every student's code on this machine as {getpass.getuser()}; "
                           "add --run-student-code-on-this-machine to do that, or use "
                           f"--target {RECOMMENDED_TARGET} for a fresh VM per submission")
    from .runner import KernelCgroup

    why = KernelCgroup.unavailable()
    if why:
        raise GradingError(f"--target local needs a cgroup to stop everything a submission starts, but {why}; "
                           f"use --target {RECOMMENDED_TARGET}")


def sweep_leftovers() -> int:
    """Kill what the reruns of a grader that was killed left running; how many reruns' worth."""
    from .runner import KernelCgroup

    return KernelCgroup.sweep()


def _collect(results: Iterable[dict], on_result: OnResult | None) -> list[dict]:
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


def _submit_all(executor, ref_path: str, paths: Sequence[Path], names: Sequence[str], rerun: bool,
                target: str | None, limits: tuple[float | None, float | None]) -> list:
    if rerun:
        # absolute paths: an executor's workers need not share this process's cwd
        return [executor.submit(rerun_submission, ref_path, str(Path(p).resolve()), n, target, *limits)
                for p, n in zip(paths, names, strict=True)]
    return [executor.submit(_grade_path, ref_path, str(p), n) for p, n in zip(paths, names, strict=True)]


def _grade_path(ref_path: str, path: str, student: str, _cache: dict = {}) -> dict:  # noqa: B006
    # The cache lives as long as the worker process: the reference is read once per worker.
    ref = _cache.get(ref_path)
    if ref is None:
        ref = _cache[ref_path] = load_reference(ref_path)
    return grade_submission(ref, path, student)


# ---- reruns ---------------------------------------------------------------------
def rerun_submission(ref_path: str, path: str, student: str, target: str,
                     timeout: float | None = DEFAULT_CELL_TIMEOUT,
                     submission_timeout: float | None = DEFAULT_SUBMISSION_TIMEOUT,
                     workdir: str | None = None) -> dict:
    """Execute a submission again and grade the fresh run; a failure of the
    machinery (a VM that does not boot, a kernel that does not start) is a flag
    on that submission, and no points, not the end of the whole grading run."""
    try:
        return _rerun_submission(ref_path, path, student, target, (timeout, submission_timeout), workdir)
    except Exception as exc:
        result = grade_submission(load_reference(ref_path), path, student)
        for entry in result["checks"].values():
            entry.update(passed=False, earned=0.0, status="invalid", message="the rerun failed")
        result.update(total=0.0, rerun=True)
        result["flags"].append({"kind": "rerun-error", "cell": None,
                                "message": f"the rerun failed: {type(exc).__name__}: {exc}"})
        return result


def _rerun_submission(ref_path: str, path: str, student: str, target: str,
                      limits: tuple[float | None, float | None], workdir: str | None) -> dict:
    """Execute a submission again (with the reference's checks, visible and
    hidden, its locked and hidden cells restored, the target fixed, in a fresh empty directory, within time limits,
    in a cgroup that is emptied afterwards) and grade the fresh run.  A plain
    function of plain arguments, so that any executor (threads, processes, a
    Dask cluster) can run it."""
    from .runner import KernelCgroup, run_notebook  # nbclient: plain grading never loads it

    ref = load_reference(ref_path)
    try:
        nb = read_notebook_json(Path(path))
    except GradingError as exc:
        return grade_submission(ref, path, student) | {"error": str(exc), "rerun": True}
    evidence = run_evidence(nb)  # of the student's own run: copies are found by these
    answers = task_answers(ref, nb)  # the student's own text, before the reference's checks go back in
    refused = target_changes(ref, nb, target)
    restore_reference(ref, nb)
    sweep_leftovers()
    contain = target == "local" or KernelCgroup.unavailable() is None
    with _scratch("workshop-rerun-", workdir) as tmp, _scratch("workshop-rerun-cwd-", None) as cwd, \
            fresh_target(target) as job_target:
        prepared = tmp / "submission.ipynb"
        prepared.write_text(json.dumps(nb), encoding="utf-8")
        run = run_notebook(prepared, out_dir=tmp / "out", target=job_target, timeout=limits[0], allow_errors=True,
                           workdir=cwd, lock_target=True, run_timeout=limits[1], contain=contain)
        result = grade_submission(ref, run.out_path, student, score_hidden=True)
    result.update(path=str(path), rerun=True, rerun_target=job_target, evidence=evidence, answers=answers)
    result["flags"] += refused + _timeout_flags(ref, run, limits)
    if run.error and not run.timed_out:
        result["flags"].append({"kind": "rerun-error", "cell": None, "message": run.error})
    return result


def _timeout_flags(ref, run, limits: tuple[float | None, float | None]) -> list[dict]:
    labels = {c.id: c.label for c in ref.cells}
    flags = [{"kind": "timed-out", "cell": labels.get(cell.cell_id, f"cell{n}"),
              "message": f"the cell timed out (the limit for one cell is {limits[0]:g} s, --timeout)"}
             for n, cell in enumerate(run.cells, 1) if limits[0] and cell.record and cell.record.get("timed_out")]
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


@contextlib.contextmanager
def fresh_target(target: str | None) -> Iterator[str | None]:
    """The target one rerun uses.  For ``qemu:NAME`` every rerun gets its own
    new VM (from the cached image), destroyed afterwards, so no submission sees
    what another left behind; other targets are used as they are."""
    if not target or not target.startswith("qemu:"):
        yield target
        return
    from .vm import VM  # only qemu reruns need the VM machinery

    vm = VM(f"{target[5:]}-{secrets.token_hex(4)}")
    try:
        vm.up()
        yield f"qemu:{vm.name}"
    finally:
        if vm.dir.exists():
            vm.destroy()


# ---- executors --------------------------------------------------------------------
def dask_executor(spec: str):
    """A Dask ``distributed.Client`` for ``dask:ADDRESS``: it has the executor's
    ``submit`` and its futures' ``result``, so reruns go to the cluster's workers.
    The workers need workshop installed and the notebooks' paths readable."""
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
    "DEFAULT_CELL_TIMEOUT", "DEFAULT_SUBMISSION_TIMEOUT", "check_rerun_target", "dask_executor", "fresh_target",
    "grade", "rerun_submission", "sweep_leftovers",
]
