"""Benchmark: re-grade a class on fresh VMs through a Dask cluster on this machine.

A real workshop notebook (default ``notebooks/00-demo.ipynb``) is the
reference; N student submissions are made from it with varied answers (right,
a wrong file, noise on stderr, a broken step, a deleted check).  Every
submission runs again on a fresh ``qemu:`` VM of its own (``--target``),
through a Dask ``LocalCluster`` of ``--workers`` single-thread workers, with
the results store in ``--out``.  Each rerun records how long its VM took to
start, its run and its grading (``OUT/results/*.json``, ``timings``); this
prints their distribution, the batch's wall time, and what that extrapolates
to for a class of 500 on a cluster of N such machines.

    WORKSHOP_VM_CACHE=/var/tmp/workshop-vm-cache python bench/grade_class.py [--submissions 50] [--workers 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def variant(nb: dict, k: int) -> dict:
    """Student ``k``'s notebook: the reference with one of a few kinds of answers."""
    nb = copy.deepcopy(nb)
    cells = {c.get("id"): c for c in nb["cells"]}

    def edit(cell_id: str, old: str, new: str) -> None:
        cell = cells.get(cell_id)
        if cell is not None:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = source.replace(old, new)

    kind = k % 5
    if kind == 1:  # the wrong text in the file the check reads
        edit("demo-05", '"a file for the check"', '"a file"')
    elif kind == 2:  # noise on stderr where the reference expects none
        edit("demo-03", "pwd\n", "pwd\necho 'debug' >&2\n")
    elif kind == 3:  # a broken helper
        edit("demo-01", "tr a-z A-Z", "tr A-Z a-z")
    elif kind == 4:  # the student deleted the check (the rerun puts it back)
        edit("demo-05", "%%check", "#%%check")
    return nb


def make_class(reference: Path, folder: Path, n: int) -> None:
    nb = json.loads(reference.read_text())
    for k in range(n):
        sub = folder / f"student{k:03d}"
        sub.mkdir(parents=True)
        (sub / reference.name).write_text(json.dumps(variant(nb, k), indent=1))


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    scale, unit = (1000, "ms") if max(values) < 1 else (1, "s")
    return "  ".join(f"{name} {value * scale:6.2f} {unit}" for name, value in
                     (("mean", statistics.mean(values)), ("median", statistics.median(values)), ("p90", p90)))


def cell_times(entries: list[dict]) -> dict[str, list[float]]:
    """Seconds each code cell took (execute_input to execute_reply), by cell id, from the stored notebooks."""
    from datetime import datetime

    times: dict[str, list[float]] = {}
    for entry in entries:
        executed = entry["result"].get("executed")
        if not executed:
            continue
        for cell in json.loads(Path(executed).read_text())["cells"]:
            stamps = cell.get("metadata", {}).get("execution") or {}
            if "iopub.execute_input" in stamps and "shell.execute_reply" in stamps:
                start, end = (datetime.fromisoformat(stamps[k].replace("Z", "+00:00"))
                              for k in ("iopub.execute_input", "shell.execute_reply"))
                times.setdefault(cell.get("id", "?"), []).append((end - start).total_seconds())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="Dask workers (one thread each)")
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "00-demo.ipynb")
    parser.add_argument("--target", default="qemu:bench", help="where each submission runs again")
    parser.add_argument("--out", type=Path, help="the results store (default: a new temporary folder)")
    parser.add_argument("--class-size", type=int, default=500)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from workshop.batch import fresh_target, grade
    from workshop.store import ResultsStore
    from workshop.vm import build_image

    tmp = Path(tempfile.mkdtemp(prefix="workshop-bench-class-"))
    out = args.out or tmp / "out"
    subs = tmp / "submissions"
    make_class(args.notebook, subs, args.submissions)
    t = time.perf_counter()
    _, built = build_image()  # what a worker would do on its first rerun; timed apart from the batch
    print(f"VM image: {'built' if built else 'cached'} in {time.perf_counter() - t:.1f} s "
          f"(WORKSHOP_VM_CACHE={os.environ.get('WORKSHOP_VM_CACHE', '(default)')})")
    if args.target.startswith("qemu:"):
        t = time.perf_counter()
        with fresh_target(args.target):  # saves the VM snapshot when there is none yet, as a first rerun would
            pass
        print(f"one fresh VM started and removed first: {time.perf_counter() - t:.1f} s")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t = time.perf_counter()
        done = [0]

        def arrived(result: dict) -> None:
            done[0] += 1
            if done[0] % 10 == 0:
                print(f"  {done[0]}/{args.submissions} after {time.perf_counter() - t:.0f} s", flush=True)

        report = grade(args.notebook, [subs], rerun=True, target=args.target, executor=client, out_dir=out,
                       on_result=arrived)
        wall = time.perf_counter() - t
    entries = ResultsStore(out).entries()
    timings = [e.get("timings", {}) for e in entries]
    failed = [r["student"] for r in report.results if any(f["kind"] in ("rerun-error", "timed-out")
                                                          for f in r["flags"])]
    totals = sorted({r["total"] for r in report.results})
    print(f"{args.submissions} submissions of {args.notebook.name} on fresh {args.target} VMs, "
          f"{args.workers} Dask workers: {wall:.0f} s wall, {wall / args.submissions:.1f} s per submission; "
          f"{len(failed)} reruns failed {failed[:3]}; totals seen {totals} of {report.reference.max_points:g}")
    for part in ("vm_start", "run", "grade", "teardown", "total"):
        print(f"  {part:9s} {spread([t[part] for t in timings if part in t])}")
    print("  inside run, each cell (from the timestamps in the executed notebooks):")
    for cell_id, seconds in cell_times(entries).items():
        print(f"    {cell_id:12s} {spread(seconds)}")
    per_worker = statistics.mean(t["total"] for t in timings if "total" in t)
    print(f"extrapolation to {args.class_size} submissions ({per_worker:.1f} s each on one worker, "
          f"{args.workers} workers per machine like this one):")
    for machines in (1, 5, 10, 25, 50):
        seconds = args.class_size * per_worker / (machines * args.workers)
        print(f"  {machines:3d} machines: {seconds / 60:6.1f} min")
    print(f"store: {out}")


if __name__ == "__main__":
    main()
