"""Benchmark: grade 1,000 recorded submissions of a 40-cell notebook (no re-runs).

One 40-cell notebook with checks in every cell is executed once by the real
kernel (``workshop run``); its executed copy is cloned into N submissions,
every tenth with an edited output and every seventh with a failing result, so
the grader does its full work (digests, regexes, flags).  Then
``workshop.batch.grade`` runs over the folder, once in-process and once
with ``jobs`` worker processes, and the CLI end to end with CSV/HTML/JSON.

    python bench/grading.py [--submissions 1000] [--cells 40] [--jobs 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

KERNELSPEC = {"name": "workshop", "display_name": "Workshop", "language": "bash"}


def make_reference(path: Path, cells: int) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.cells = [nbformat.v4.new_markdown_cell("# Benchmark lab")]
    for i in range(cells):
        if i % 2 == 0:
            source = (
                f"%expect exit 0\n%expect stdout /^step {i} done/\n%expect stderr empty\n"
                f"for n in $(seq 1 50); do echo \"line $n of step {i}\"; done\necho 'step {i} done'"
            )
        else:
            source = (
                f"mkdir -p work/step{i} && echo made {i}\n%%check --name made --points 2\n"
                f"test -d work/step{i} || echo 'FAIL: work/step{i} is missing'"
            )
        nb.cells.append(nbformat.v4.new_markdown_cell(f"Step {i}"))
        nb.cells.append(nbformat.v4.new_code_cell(source, id=f"step{i}"))
    nb.cells[2].source = nb.cells[2].source.replace("for n in", 'cd "$(mktemp -d)"\nfor n in', 1)
    nbformat.write(nb, str(path))


def clone(executed: dict, folder: Path, n: int) -> None:
    for k in range(n):
        nb = copy.deepcopy(executed)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if k % 10 == 3:  # an edited output
            stream = next(o for o in code[4]["outputs"] if o["output_type"] == "stream")
            stream["text"] = "step 4 done\n"
        if k % 7 == 5:  # a failing check result recorded by the kernel
            for output in code[5]["outputs"]:
                record = output.get("data", {}).get("application/vnd.workshop.record+json")
                if record:
                    record["checks"][0]["passed"] = False
                    record["checks"][0]["message"] = "work/step5 is missing"
        sub = folder / f"student{k:04d}"
        sub.mkdir()
        (sub / "lab.ipynb").write_text(json.dumps(nb, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from workshop.batch import grade
    from workshop.reports import to_csv, to_html, to_json

    tmp = Path(tempfile.mkdtemp(prefix="workshop-bench-grading-"))
    ref = tmp / "lab.ipynb"
    make_reference(ref, args.cells)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "workshop", "run", "--out", str(tmp / "run"), str(ref)],
        check=True,
        capture_output=True,
    )
    print(f"executed the {args.cells}-cell reference once: {time.perf_counter() - t:.1f} s")
    executed = json.loads((tmp / "run" / "lab.ipynb").read_text())
    subs = tmp / "submissions"
    subs.mkdir()
    clone(executed, subs, args.submissions)
    size = sum(p.stat().st_size for p in subs.rglob("*.ipynb")) / 1e6
    print(f"{args.submissions} submissions, {size:.0f} MB")

    t = time.perf_counter()
    report = grade(ref, [subs])
    serial = time.perf_counter() - t
    flagged = sum(1 for r in report.results if r["flags"])
    print(
        f"grade, 1 process:        {serial:.2f} s  ({serial / args.submissions * 1000:.2f} ms/submission; "
        f"{len(report.reference.checks)} checks, {flagged} flagged)"
    )
    t = time.perf_counter()
    to_csv(report), to_html(report), to_json(report)
    print(f"CSV + HTML + JSON:       {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    grade(ref, [subs], jobs=args.jobs)
    print(f"grade, {args.jobs} processes:      {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "workshop",
            "grade",
            "-q",
            str(ref),
            str(subs),
            "--csv",
            str(tmp / "g.csv"),
            "--html",
            str(tmp / "g.html"),
            "--json",
            str(tmp / "g.json"),
        ],
        check=True,
    )
    print(f"workshop grade CLI (CSV+HTML+JSON, end to end): {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
