"""Grading many submissions: in this process, in a local pool, or rerun on fresh targets.

``--rerun`` executes each submission again on a fresh target through any
``concurrent.futures``-style executor (``submit(fn, *args)`` returning futures
with ``result()``), so a Dask ``distributed.Client`` can stand in for the local
pool.  What one submission earns is decided by :mod:`workshop.grading`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from .errors import GradingError, TargetError
from .grading import (
    Report,
    expand_paths,
    grade_submission,
    load_reference,
    read_notebook_json,
    restore_reference,
    student_names,
)

OnResult = Callable[[dict], None]


def grade(reference: Path | str, submissions: Iterable[Path | str], *, rerun: bool = False,
          target: str | None = None, jobs: int = 1, executor=None, timeout: float | None = None,
          on_result: OnResult | None = None) -> Report:
    """Grade many submissions; ``executor`` is any object with ``submit``."""
    ref = load_reference(reference)
    if rerun and target:
        _check_target(target)
    paths = expand_paths(submissions)
    names = student_names(paths)
    if not rerun and executor is None and jobs <= 1:
        graded = (grade_submission(ref, path, name) for path, name in zip(paths, names, strict=True))
        return Report(ref, _collect(graded, on_result))
    own = executor is None
    if own:
        executor = _local_pool(rerun, jobs)
    try:
        futures = _submit_all(executor, str(Path(reference).resolve()), paths, names, rerun, target, timeout)
        results = _collect((future.result() for future in futures), on_result)
    finally:
        if own:
            executor.shutdown()
    return Report(ref, results)


def _check_target(target: str) -> None:
    """Refuse a bad --target before any submission is touched."""
    from .targets import parse_target  # only reruns need the targets

    try:
        parse_target(target)
    except TargetError as exc:
        raise GradingError(f"--target {target}: {exc}") from None


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
                target: str | None, timeout: float | None) -> list:
    if rerun:
        # absolute paths: an executor's workers need not share this process's cwd
        return [executor.submit(rerun_submission, ref_path, str(Path(p).resolve()), n, target, timeout)
                for p, n in zip(paths, names, strict=True)]
    return [executor.submit(_grade_path, ref_path, str(p), n) for p, n in zip(paths, names, strict=True)]


def _grade_path(ref_path: str, path: str, student: str, _cache: dict = {}) -> dict:  # noqa: B006
    # The cache lives as long as the worker process: the reference is read once per worker.
    ref = _cache.get(ref_path)
    if ref is None:
        ref = _cache[ref_path] = load_reference(ref_path)
    return grade_submission(ref, path, student)


# ---- reruns ---------------------------------------------------------------------
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
    from .runner import run_notebook  # nbclient: plain grading (and its pool workers) never load it

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


__all__ = ["dask_executor", "fresh_target", "grade", "rerun_submission"]
