"""What one hostile submission may cost the grader: its memory, its time, and
what its row says (the submission's own file, and what the student's code did)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import clean_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "notebooks" / "00-demo.ipynb"
# Runs the command given and prints the peak resident memory of its largest process, in KiB.
PEAK = ("import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)\n")


def million_cells(path: Path) -> None:
    """A 98 MB notebook of 1,000,000 empty code cells, written without holding it in memory."""
    with path.open("w") as fh:
        fh.write('{"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "workshop"}}, "cells": [')
        for i in range(1_000_000):
            fh.write(("," if i else "") + '{"cell_type":"code","execution_count":null,"id":"' + f"{i:08x}"
                     + '","metadata":{},"outputs":[],"source":[]}')
        fh.write("]}")


def grade_measured(tmp_path: Path, subs: Path, *extra: str) -> tuple[int, float, dict, str]:
    """Peak memory (MiB) and seconds of a real `workshop grade`, its JSON report and its stderr."""
    out = tmp_path / "g.json"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "workshop", "grade", str(DEMO),
                           str(subs), "--json", str(out), "-q", *extra], capture_output=True, text=True,
                          timeout=600, env=clean_env())
    seconds = time.monotonic() - started
    peak_kib, code = map(int, done.stdout.split())
    assert code == 0, done.stderr
    return peak_kib // 1024, seconds, json.loads(out.read_text()), done.stderr


@pytest.mark.parametrize("rerun", [False, True], ids=["records", "rerun"])
def test_a_million_cells_are_refused_early_in_bounded_memory(tmp_path, installed_kernelspec, rerun):
    subs = tmp_path / "subs"
    subs.mkdir()
    million_cells(subs / "huge.ipynb")
    assert (subs / "huge.ipynb").stat().st_size > 90_000_000
    subprocess.run([sys.executable, "-m", "workshop", "run", str(DEMO), "--out", str(tmp_path / "honest")],
                   capture_output=True, timeout=120, env=clean_env(), check=False)
    (subs / "honest.ipynb").write_bytes((tmp_path / "honest" / "00-demo.ipynb").read_bytes())
    extra = ("--rerun", "--target", "local", "--run-student-code-on-this-machine", "--submission-timeout", "60",
             "--timeout", "30") if rerun else ()
    peak, seconds, report, stderr = grade_measured(tmp_path, subs, *extra)
    assert peak < 400, f"the grader took {peak} MiB"
    assert seconds < 60
    rows = {r["student"]: r for r in report["submissions"]}
    huge = rows["huge"]
    assert huge["path"] == str(subs / "huge.ipynb")
    [flag] = huge["flags"]
    assert flag["kind"] == "unreadable"
    assert flag["message"] == (f"{subs / 'huge.ipynb'}: has 1,000,000 cells, over the limit of 10,000 for a notebook; "
                               "refused without grading it")
    assert f"✘ {subs / 'huge.ipynb'}: has 1,000,000 cells" in stderr
    assert "workshop-grade-" not in json.dumps(huge) and "workshop-rerun-" not in json.dumps(huge)  # no temp file
    # the bad file took nothing from the others
    assert rows["honest"]["total"] == rows["honest"]["max"] > 0 and rows["honest"]["flags"] == []


def test_a_fork_bomb_is_the_students_doing_with_the_limits_applied(tmp_path, installed_kernelspec):
    """A local rerun's processes are capped: a fork bomb is a resource-limit and a timeout of
    the student's code, with the limits given (--timeout 10), never a failure of the grader."""
    from test_grading import make_notebook

    ref = make_notebook(tmp_path / "reference.ipynb", {
        "before": "%expect stdout /^before/\necho before",
        # the cell lasts while the bomb grows: it reaches the limit before the cell ends and its processes go
        "bomb": "%expect exit 0\nbomb() { bomb | bomb & }; bomb; sleep 5",
        "after": "%expect stdout /^after/\necho after",
    })
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "mallory.ipynb").write_bytes(ref.read_bytes())
    out = tmp_path / "g.json"
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--json", str(out), "-q",
                           "--rerun", "--target", "local", "--run-student-code-on-this-machine", "--timeout", "10",
                           "--submission-timeout", "90"], capture_output=True, text=True, timeout=300, env=clean_env())
    assert done.returncode == 0, done.stderr
    [row] = json.loads(out.read_text())["submissions"]
    assert row["path"] == str(subs / "mallory.ipynb")
    kinds = {f["kind"] for f in row["flags"]}
    assert "rerun-error" not in kinds, row["flags"]
    [limit] = [f for f in row["flags"] if f["kind"] == "resource-limit"]
    assert limit["message"].startswith("the submission's code ran into a limit of the rerun: its processes "
                                       "reached the limit of 512 processes at once (a fork bomb?): ")
    timeouts = [f["message"] for f in row["flags"] if f["kind"] == "timed-out"]
    assert all("10 s" in m or "90 s" in m for m in timeouts) and not any("60 s" in m for m in timeouts), timeouts
    assert row["checks"]["cell 1:stdout /^before/"]["passed"]


def test_a_rerun_that_prints_without_end_is_stopped_at_its_output_budget(tmp_path, installed_kernelspec):
    from test_grading import make_notebook

    from workshop.batch import RERUN_OUTPUT_BUDGET

    cells = {f"c{i:02d}": "head -c 8000000 /dev/zero | tr '\\0' x" for i in range(12)}  # 96 MB in all
    ref = make_notebook(tmp_path / "ref.ipynb", {"c00": "%expect exit 0\ntrue"})
    subs = tmp_path / "subs"
    subs.mkdir()
    make_notebook(subs / "loud.ipynb", cells)
    out = tmp_path / "g.json"
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "workshop", "grade", str(ref),
                           str(subs), "--json", str(out), "-q", "--rerun", "--target", "local",
                           "--run-student-code-on-this-machine", "--out", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=600, env=clean_env())
    peak_kib, code = map(int, done.stdout.split())
    assert code == 0, done.stderr
    loud = json.loads(out.read_text())["submissions"][0]
    limits = [f["message"] for f in loud["flags"] if f["kind"] == "resource-limit"]
    assert limits and f"more than {RERUN_OUTPUT_BUDGET >> 20} MiB" in limits[0], loud["flags"]
    assert not [f for f in loud["flags"] if f["kind"] == "rerun-error"]
    executed = json.loads(next((tmp_path / "store" / "executed").glob("*.ipynb")).read_text())
    ran = [c for c in executed["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    assert len(ran) < len(cells), "the cells after the budget ran all the same"
    assert peak_kib // 1024 < 700, f"the grader took {peak_kib // 1024} MiB"
