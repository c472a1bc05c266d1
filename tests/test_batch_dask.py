"""Reruns on a real Dask cluster (a scheduler and workers as separate processes):
workers that cannot see the grader's files, a worker killed in the middle of a
submission, a submission that hangs."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness import clean_env, stop
from test_grading import make_notebook
from test_rerun_isolation import HELLO, kinds, results_of, survivors, wait_for

pytestmark = pytest.mark.slow

pytest.importorskip("distributed", reason="pip install distributed")

LOCAL = ["--target", "local", "--run-student-code-on-this-machine"]
DASK = [sys.executable, "-m"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dask_cluster(*worker_prefixes: list[str]):
    """A scheduler and one worker per prefix (a command the worker runs under, e.g. in its own
    mount namespace), each worker one thread without a nanny: its pid is the process that runs tasks.
    Yields the address and the workers' processes."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": clean_env()}
    procs = [subprocess.Popen([*DASK, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
    workers = [subprocess.Popen([*prefix, *DASK, "distributed.cli.dask_worker", address, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], **quiet)
               for prefix in worker_prefixes]
    procs += workers
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(len(workers), timeout=90)
        yield address, workers
    finally:
        stop(list(reversed(procs)))


def hidden_from(folder: Path) -> list[str]:
    """A command prefix: run in a mount namespace of its own where ``folder`` is an empty tmpfs."""
    script = 'mount -t tmpfs workshop-test-hidden "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(folder)]


def grade_on(address: str, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", "grade", *map(str, args), "--rerun", *LOCAL,
                           "--executor", f"dask:{address}"], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(COLUMNS="200"))


# ---- no shared file system ------------------------------------------------------------------
WHERE = {"where": "%expect stdout /^ran in /\necho \"ran in $PWD\"", **HELLO}


def test_workers_need_no_shared_file_system(tmp_path, installed_kernelspec):
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    ref = make_notebook(tmp_path / "reference.ipynb", WHERE)
    make_notebook(subs / "alice.ipynb", WHERE)
    make_notebook(subs / "bob.ipynb", {"where": "echo elsewhere", "hello": "echo hello"})
    make_notebook(subs / "sleeper.ipynb", {"where": "sleep 86400", "hello": "echo hello"})
    with dask_cluster(hidden_from(tmp_path)) as (address, _):
        from distributed import Client

        with Client(address, timeout="30s") as client:  # the worker really cannot see the grader's files
            seen = client.run(lambda: [Path(p).exists() for p in (subs / "alice.ipynb", ref, out)])
        assert list(seen.values()) == [[False, False, False]]
        done = grade_on(address, ref, subs, "--timeout", "3", "--out", out, "--json", tmp_path / "g.json")
    assert done.returncode == 0, done.stderr
    results = results_of(tmp_path / "g.json")
    assert results["alice"]["total"] == results["alice"]["max"] == 2 and kinds(results["alice"]) == set()
    where = next(c for key, c in results["bob"]["checks"].items() if key.endswith(":stdout /^ran in /"))
    assert results["bob"]["total"] == 1 and where["passed"] is False
    # the hanging submission was stopped by --timeout and says so; the cell after it still ran
    stopped = [f for f in results["sleeper"]["flags"] if f["kind"] == "timed-out"]
    assert stopped and "3 s" in stopped[0]["message"] and "rerun-error" not in kinds(results["sleeper"])
    assert results["sleeper"]["total"] == 1
    assert "timed-out" in done.stdout
    # the executed notebooks came back to the grader's output folder, named by digest
    for name, result in results.items():
        executed = Path(result["executed"])
        assert executed.parent == out / "executed" and executed.name[:-6].isalnum(), name
        cells = json.loads(executed.read_text())["cells"]
        shown = "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c["outputs"])
        assert "hello" in shown, name
        assert str(subs) not in shown  # it ran in the worker's own scratch directory
    assert sorted(p.suffix for p in (out / "results").iterdir()) == [".json"] * 3


# ---- a worker killed in the middle of a submission -----------------------------------------------
def slow_once(marker: Path, token: int) -> str:
    """A cell that notes the Dask worker running it; the first time it then sleeps (practically) forever."""
    return (f"n=$(cat {marker} 2>/dev/null | wc -l)\n"
            "p=$$\n"
            "while [ \"$p\" -gt 1 ]; do\n"
            "  tr '\\0' ' ' < /proc/$p/cmdline | grep -q dask_worker && break\n"
            "  p=$(awk '{print $4}' /proc/$p/stat)\n"
            "done\n"
            f"echo $p >> {marker}\n"
            f"[ \"$n\" -gt 0 ] || sleep {token}\n"
            "echo hello")


def test_a_worker_killed_mid_task_and_every_submission_is_graded_once(tmp_path, installed_kernelspec):
    token = random.randrange(100_000, 999_999)
    marker = tmp_path / "slow.runs"
    subs = tmp_path / "subs"
    subs.mkdir()
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    make_notebook(subs / "slow.ipynb", {"hello": slow_once(marker, token)})
    for name in ("ann", "ben", "cat"):
        make_notebook(subs / f"{name}.ipynb", HELLO)
    with dask_cluster([], []) as (address, workers):
        grader = subprocess.Popen(
            [sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--rerun", *LOCAL,
             "--executor", f"dask:{address}", "--out", str(tmp_path / "out"), "--json", str(tmp_path / "g.json"),
             "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
        try:
            wait_for(lambda: survivors(token), 240, "the slow submission's first run")
            victim = int(marker.read_text().split()[0])
            assert victim in {w.pid for w in workers}, (victim, [w.pid for w in workers])
            killed = next(w for w in workers if w.pid == victim)
            killed.kill()  # SIGKILL, mid-task
            killed.wait()  # as a nanny or systemd would: a zombie would still count as running
            out, err = grader.communicate(timeout=400)
        finally:
            if grader.poll() is None:
                grader.kill()
                grader.wait()
    assert grader.returncode == 0, err
    report = json.loads((tmp_path / "g.json").read_text())["submissions"]
    assert sorted(r["student"] for r in report) == ["ann", "ben", "cat", "slow"]  # each once
    assert all(r["total"] == r["max"] == 1 and kinds(r) == set() for r in report), report
    runs = marker.read_text().split()
    assert len(runs) == 2 and runs[0] != runs[1]  # started on the killed worker, finished on the other
    assert survivors(token) == []  # the killed worker's kernel was swept by the next rerun
    entries = [json.loads(p.read_text()) for p in (tmp_path / "out" / "results").iterdir()]
    assert len(entries) == 4 and all(e["timings"]["run"] > 0 for e in entries)
