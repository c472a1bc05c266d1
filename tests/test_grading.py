"""Grading real notebooks executed by the kernel, honest and tampered ones."""

from __future__ import annotations

import ast
import copy
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from harness import stop
from nbclient import NotebookClient

from workshop.batch import grade
from workshop.errors import GradingError, NoChecksError
from workshop.grading import load_reference, restore_reference
from workshop.reports import to_csv

RECORD = "application/vnd.workshop.record+json"
KERNELSPEC = {"name": "workshop", "display_name": "Workshop", "language": "bash"}

SETUP = 'cd "$(mktemp -d)"\necho ready'
HELLO = "%expect exit 0\n%expect stdout /^hello/\n%expect stderr empty\necho hello world"
ROOTFS = "mkdir -p rootfs/bin\n%%check --points 3 --name rootfs\ntest -d rootfs/bin || echo 'FAIL: rootfs/bin is missing'"
LS = "%expect exit 2\nls /nonexistent-workshop-dir"


def make_notebook(path: Path, sources: dict[str, str], **meta) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.cells = [nbformat.v4.new_markdown_cell("# Lab 1")]
    for cell_id, source in sources.items():
        nb.cells.append(nbformat.v4.new_code_cell(source, id=cell_id, metadata=meta.get(cell_id, {})))
    nbformat.write(nb, str(path))
    return path


REFERENCE = {"setup": "%expect stdout /ready/\n" + SETUP, "hello": HELLO, "rootfs": ROOTFS, "ls": LS}
META = {"setup": {"workshop": {"locked": True}}, "hello": {"workshop": {"name": "hello", "points": 2}}}
MAX = 1 + 3 * 2 + 3 + 1


def run_cells(path: Path, order: list[list[int]], out: Path) -> Path:
    """Execute the code cells of ``path`` in the given order, each inner list in
    one kernel session, as a student clicking around would."""
    nb = nbformat.read(str(path), as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for group in order:
        client = NotebookClient(nb, kernel_name="workshop", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}})
        with client.setup_kernel():
            for n in group:
                client.execute_cell(nb.cells[code[n]], code[n])
    nbformat.write(nb, str(out))
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory, installed_kernelspec):
    """A reference and a class of submissions, all executed by the real kernel."""
    d = tmp_path_factory.mktemp("lab")
    subs = d / "subs"
    subs.mkdir()
    ref = make_notebook(d / "reference.ipynb", REFERENCE, **META)
    src = {
        "good": make_notebook(d / "good.ipynb", REFERENCE, **META),
        "wrong": make_notebook(d / "wrong.ipynb", REFERENCE | {
            "hello": HELLO.replace("echo hello world", "echo hi >&2"),
            "rootfs": ROOTFS.replace("mkdir -p rootfs/bin", "echo oops")}, **META),
        "deleted": make_notebook(d / "deleted.ipynb", REFERENCE | {"rootfs": "echo skipped the check"}, **META),
        "cheat": make_notebook(d / "cheat.ipynb", REFERENCE | {
            "rootfs": "echo no rootfs\n%%check --points 3 --name rootfs\ntrue"}, **META),
        "locked": make_notebook(d / "locked.ipynb", REFERENCE | {"setup": REFERENCE["setup"] + "\necho extra"},
                                **META),
    }

    def workshop_run(name):
        out = subs / f"{name}.ipynb"
        done = subprocess.run([sys.executable, "-m", "workshop", "run", "--keep-going", "--out", str(d / "run"),
                               "--junit", str(d / f"{name}.xml"), str(src[name])],
                              capture_output=True, text=True, timeout=120)
        (d / "run" / f"{name}.ipynb").rename(out)
        return name, done

    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(workshop_run, name) for name in src]
        jobs.append(pool.submit(lambda: ("disorder", run_cells(src["good"], [[0, 2, 1, 3]], subs / "disorder.ipynb"))))
        jobs.append(pool.submit(lambda: ("restarted", run_cells(src["good"], [[0, 1], [2, 3]],
                                                                 subs / "restarted.ipynb"))))
        runs = dict(job.result() for job in jobs)

    good = json.loads((subs / "good.ipynb").read_text())
    # Edited after the run: the shown output no longer matches the record.
    edited = copy.deepcopy(good)
    hello = next(c for c in edited["cells"] if c.get("id") == "hello")
    stream = next(o for o in hello["outputs"] if o["output_type"] == "stream")
    stream["text"] = "hello world, and more\n"
    (subs / "edited.ipynb").write_text(json.dumps(edited))
    # Outputs cleared in one checked cell.
    cleared = copy.deepcopy(good)
    next(c for c in cleared["cells"] if c.get("id") == "ls")["outputs"] = []
    (subs / "cleared.ipynb").write_text(json.dumps(cleared))
    (subs / "corrupt.ipynb").write_text('{"cells": [ {"cell_type": "code", "sou')
    python = copy.deepcopy(good)
    python["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (subs / "python.ipynb").write_text(json.dumps(python))
    return {"dir": d, "ref": ref, "subs": subs, "runs": runs}


def by_student(report) -> dict[str, dict]:
    return {r["student"]: r for r in report.results}


def kinds(result) -> set[str]:
    return {f["kind"] for f in result["flags"]}


def test_workshop_run_exit_status_and_junit(lab):
    runs = lab["runs"]
    assert runs["good"].returncode == 0, runs["good"].stderr
    assert runs["wrong"].returncode == 1
    assert "✘ hello (cell 2, id hello): check stdout /^hello/: stdout does not match" in runs["wrong"].stderr
    from xml.etree import ElementTree as ET

    good = ET.parse(lab["dir"] / "good.xml").getroot()
    cases = good.findall(".//testcase")
    assert len(cases) == 6 and not good.findall(".//failure")
    wrong = ET.parse(lab["dir"] / "wrong.xml").getroot()
    suite = wrong.find("testsuite")
    assert suite.get("tests") == "6" and suite.get("failures") == "3"
    failures = {c.get("name"): c.find("failure") for c in wrong.iter("testcase") if c.find("failure") is not None}
    assert set(failures) == {"hello (cell 2, id hello): stdout /^hello/", "hello (cell 2, id hello): stderr empty",
                             "cell 3 (id rootfs): rootfs"}
    assert failures["cell 3 (id rootfs): rootfs"].get("message") == "cell 3 (id rootfs): check rootfs: rootfs/bin is missing"
    assert "expected: stdout matching /^hello/" in failures["hello (cell 2, id hello): stdout /^hello/"].text


def test_records_name_their_cells_in_headless_runs(lab):
    nb = json.loads((lab["subs"] / "good.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            record = next(o["data"][RECORD] for o in cell["outputs"] if RECORD in o.get("data", {}))
            assert record["cell_id"] == cell["id"]


def test_grade_flags_each_submission(lab):
    report = grade(lab["ref"], [lab["subs"]])
    results = by_student(report)
    assert set(results) == {"good", "wrong", "deleted", "cheat", "locked", "disorder", "restarted", "edited",
                            "cleared", "corrupt", "python"}
    good = results["good"]
    assert (good["total"], good["max"]) == (MAX, MAX)
    # "edited" and "cleared" below are copies of this notebook: the same run, so a replay
    assert kinds(good) == {"replay"}
    replay = next(f for f in good["flags"] if f["kind"] == "replay")
    assert "edited" in replay["message"] and "cleared" in replay["message"] and "disorder" not in replay["message"]

    wrong = results["wrong"]
    assert wrong["total"] == MAX - 4 - 3 and kinds(wrong) == set()
    assert wrong["checks"]["cell 3:rootfs"]["message"] == "rootfs/bin is missing"
    assert "hi" in wrong["cells"]["hello"]["stderr"]

    edited = results["edited"]
    assert kinds(edited) == {"output-edited", "replay"}
    assert edited["total"] == MAX - 6  # every check of the edited cell earns nothing
    assert edited["checks"]["hello:exit 0"]["status"] == "invalid"

    deleted = results["deleted"]
    assert kinds(deleted) == {"check-removed"}
    assert deleted["checks"]["cell 3:rootfs"]["status"] == "missing"
    assert deleted["total"] == MAX - 3

    cheat = results["cheat"]
    assert kinds(cheat) == {"check-edited"}
    assert cheat["checks"]["cell 3:rootfs"]["passed"] is False
    assert cheat["total"] == MAX - 3

    locked = results["locked"]
    assert "locked-changed" in kinds(locked)
    assert locked["checks"]["cell 1:stdout /ready/"]["earned"] == 0

    assert kinds(results["disorder"]) == {"out-of-order"}
    assert results["disorder"]["total"] == MAX  # a flag for the instructor, points kept
    assert "sessions" in kinds(results["restarted"])
    assert kinds(results["cleared"]) == {"record-missing", "replay"}
    assert results["cleared"]["checks"]["cell 4:exit 2"]["earned"] == 0

    assert kinds(results["corrupt"]) == {"unreadable"}
    assert "invalid JSON" in results["corrupt"]["error"]
    assert "'python3' kernel" in results["python"]["error"]
    assert results["corrupt"]["total"] == 0


def test_grade_cli_reports(lab, tmp_path):
    csv_path, html_path, json_path = tmp_path / "g.csv", tmp_path / "g.html", tmp_path / "g.json"
    done = subprocess.run(
        [sys.executable, "-m", "workshop", "grade", str(lab["ref"]), str(lab["subs"]),
         "--csv", str(csv_path), "--html", str(html_path), "--json", str(json_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "corrupt.ipynb: not a readable notebook" in done.stderr
    assert "good" in done.stdout and f"{MAX:g}/{MAX:g}" in done.stdout

    rows = list(csv.DictReader(csv_path.open(newline="")))
    assert len(rows) == 11
    header = list(rows[0])
    assert header[0] == "student" and header[-3:] == ["total", "max", "flags"]
    assert len(header) == 1 + 6 + 3
    row = {r["student"]: r for r in rows}
    assert row["good"]["total"] == f"{MAX:g}" and row["good"]["flags"] == "replay"
    assert row["edited"]["flags"] == "output-edited; replay" and row["edited"]["hello:stdout /^hello/"] == "0"
    assert row["wrong"]["cell 3:rootfs"] == "0" and row["wrong"]["cell 4:exit 2"] == "1"

    data = json.loads(json_path.read_text())
    assert data["max_points"] == MAX and len(data["checks"]) == 6
    assert {s["student"] for s in data["submissions"]} == set(row)

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.students, self.sections, self.pre = [], [], []
            self._in_pre = False

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "tr" and attrs.get("class") == "student":
                self.students.append(attrs["data-student"])
            if tag == "section":
                self.sections.append(attrs["id"])
            self._in_pre = tag == "pre"

        def handle_data(self, data):
            if self._in_pre:
                self.pre.append(data)

    parser = Parser()
    page = html_path.read_text()
    parser.feed(page)
    assert sorted(parser.students) == sorted(row)
    assert len(parser.sections) == 11
    assert any("hi" in text for text in parser.pre)  # the failing output of "wrong"
    assert "rootfs/bin is missing" in page
    assert "hello (cell 2, id hello): failing output" in page  # cells named as in every report
    assert "<script" not in page and "http" not in page.split("<body>", 1)[1]  # self-contained


def test_grade_cli_errors(lab, tmp_path):
    def workshop_grade(*args):
        return subprocess.run([sys.executable, "-m", "workshop", "grade", *map(str, args)],
                              capture_output=True, text=True, timeout=60)

    plain = make_notebook(tmp_path / "plain.ipynb", {"a": "echo no checks here"})
    done = workshop_grade(plain, lab["subs"] / "good.ipynb")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "has no checks" in done.stderr
    done = workshop_grade(lab["subs"] / "corrupt.ipynb", lab["subs"] / "good.ipynb")
    assert done.returncode == 2 and "not a readable notebook" in done.stderr
    done = workshop_grade(lab["subs"] / "python.ipynb", lab["subs"] / "good.ipynb")
    assert done.returncode == 2 and "for the 'python3' kernel" in done.stderr
    with pytest.raises(NoChecksError, match="has no checks"):
        load_reference(plain)
    with pytest.raises(GradingError, match="not a readable notebook"):
        load_reference(lab["subs"] / "corrupt.ipynb")


def test_restore_reference_puts_checks_back(lab):
    ref = load_reference(lab["ref"])
    nb = json.loads((lab["subs"] / "cheat.ipynb").read_text())
    restore_reference(ref, nb)
    rootfs = next(c for c in nb["cells"] if c.get("id") == "rootfs")
    assert "".join(rootfs["source"]) == "echo no rootfs\n" + ROOTFS.split("\n", 1)[1]


def test_rerun_grades_a_fresh_run(lab, tmp_path):
    subs = [lab["subs"] / "deleted.ipynb", lab["subs"] / "cheat.ipynb", lab["subs"] / "edited.ipynb"]
    report = grade(lab["ref"], subs, rerun=True, target="local", run_student_code_on_this_machine=True, jobs=2,
                   timeout=60)
    results = by_student(report)
    # The reference's checks run again whatever the submission did to them.
    assert results["deleted"]["checks"]["cell 3:rootfs"]["status"] == "failed"
    assert results["deleted"]["checks"]["cell 3:rootfs"]["message"] == "rootfs/bin is missing"
    assert results["cheat"]["checks"]["cell 3:rootfs"]["message"] == "rootfs/bin is missing"
    assert results["edited"]["total"] == MAX and results["edited"]["flags"] == []
    assert all(r.get("rerun") for r in report.results)


def test_csv_is_one_row_per_student(lab):
    report = grade(lab["ref"], [lab["subs"] / "good.ipynb", lab["subs"] / "wrong.ipynb"])
    lines = to_csv(report).splitlines()
    assert len(lines) == 3


@pytest.fixture
def dask_cluster():
    """A real Dask scheduler and worker, as separate processes on loopback."""
    pytest.importorskip("distributed", reason="pip install distributed")
    import socket

    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    common = ["--no-dashboard"]
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "2", "--nworkers", "1", *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        stop([worker, scheduler])


def test_rerun_on_a_dask_cluster(lab, tmp_path, dask_cluster):
    subs = [lab["subs"] / "deleted.ipynb", lab["subs"] / "edited.ipynb"]
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "workshop", "grade", str(lab["ref"]), *map(str, subs), "--rerun", "--target", "local",
         "--run-student-code-on-this-machine", "--executor", f"dask:{dask_cluster}", "--timeout", "60", "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    results = {r["student"]: r for r in json.loads(out.read_text())["submissions"]}
    assert results["deleted"]["checks"]["cell 3:rootfs"]["message"] == "rootfs/bin is missing"
    assert results["edited"]["total"] == MAX and results["edited"]["flags"] == []
    assert all(r.get("rerun") for r in results.values())
    # and the scheduler handed them to its worker
    from distributed import Client

    with Client(dask_cluster, timeout="30s") as client:
        keys = client.run_on_scheduler(lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log])
    assert sum(1 for k in set(keys) if k.startswith("rerun_submission")) == len(subs)


def test_an_unreachable_dask_scheduler_is_one_sentence(lab):
    pytest.importorskip("distributed", reason="pip install distributed")
    done = subprocess.run(
        [sys.executable, "-m", "workshop", "grade", str(lab["ref"]), str(lab["subs"] / "good.ipynb"), "--rerun",
         "--target", "local", "--run-student-code-on-this-machine", "--executor", "dask:tcp://127.0.0.1:1"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "cannot reach the Dask scheduler" in done.stderr and "Traceback" not in done.stderr


PACKAGE = Path(__file__).parent.parent / "workshop"


def imported_modules(module: str) -> set[str]:
    """What a workshop module imports, anywhere in it (inside functions too), as absolute names."""
    files = sorted((PACKAGE / module).glob("*.py")) if (PACKAGE / module).is_dir() else [PACKAGE / f"{module}.py"]
    names: set[str] = set()
    for node in (node for path in files for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(filter(None, ("workshop" if node.level else "", node.module)))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # "from . import runner" names a module
    return names


def imports_module(names: set[str], module: str) -> bool:
    return any(name.split(".")[:2] == ["workshop", module] for name in names)


def test_grading_is_pure_and_the_runner_does_not_batch():
    """grading <- runner <- batch: grading never reaches back to running or reporting."""
    grading = imported_modules("grading")
    for module in ("runner", "batch", "reports"):
        assert not imports_module(grading, module), f"workshop/grading imports workshop.{module}"
    assert not {"nbclient", "nbformat", "jinja2", "rich", "distributed"} & {n.split(".")[0] for n in grading}
    runner = imported_modules("runner")
    assert imports_module(runner, "grading")  # the parser sees runner's imports at all
    assert not imports_module(runner, "batch"), "workshop/runner.py imports workshop.batch"
