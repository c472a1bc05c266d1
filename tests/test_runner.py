"""Headless: nbconvert --execute, the pytest plugin, workshop run on failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from harness import clean_env

pytestmark = pytest.mark.slow

RECORD = "application/vnd.workshop.record+json"
KERNELSPEC = {"name": "workshop", "display_name": "Workshop", "language": "bash"}


def make_notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.cells = [nbformat.v4.new_code_cell(source, id=f"c{i}") for i, source in enumerate(sources)]
    nbformat.write(nb, str(path))
    return path


PASSING = (
    "cd \"$(mktemp -d)\"\nprintf '10%%\\r50%%\\r100%%\\n'",
    "%expect stdout /^hello/\n%expect stderr empty\necho hello",
    "touch made\n%%check --name made\ntest -f made || echo 'FAIL: made is missing'",
)
FAILING = (
    "%expect stdout /^bye/\necho hello",
    "%%check --name there\ntest -f /nonexistent-workshop-file || echo 'FAIL: the file is not there'",
)


def test_nbconvert_execute_keeps_records_and_checks(tmp_path, installed_kernelspec):
    nb = make_notebook(tmp_path / "nb.ipynb", *PASSING, *FAILING)
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.kernel_name=workshop", "--output", "executed.ipynb", str(nb)],
        capture_output=True, text=True, timeout=180, env=clean_env(),
    )
    assert done.returncode == 0, done.stderr  # failed checks do not stop nbconvert
    executed = json.loads((tmp_path / "executed.ipynb").read_text())
    records = [next(o["data"][RECORD] for o in c["outputs"] if RECORD in o.get("data", {}))
               for c in executed["cells"]]
    assert [r["status"] for r in records] == ["ok"] * 5
    checks = [[(c["name"], c["passed"]) for c in r["checks"]] for r in records]
    assert checks == [[], [("stdout /^hello/", True), ("stderr empty", True)], [("made", True)],
                      [("stdout /^bye/", False)], [("there", False)]]
    assert records[4]["checks"][0]["message"] == "the file is not there"
    # The saved notebook grades against itself like the kernel judged it live.
    from workshop.batch import grade

    report = grade(nb, [tmp_path / "executed.ipynb"])
    result = report.results[0]
    assert result["flags"] == []
    assert [c["passed"] for c in result["checks"].values()] == [True, True, True, False, False]


def test_workshop_run_timeout_and_failed_check_exit_status(tmp_path, installed_kernelspec):
    good = make_notebook(tmp_path / "good.ipynb", *PASSING)
    slow = make_notebook(tmp_path / "slow.ipynb", "%expect exit 0\nsleep 30", "echo never")
    done = subprocess.run(
        [sys.executable, "-m", "workshop", "run", "--timeout", "1", "--out", str(tmp_path / "out"),
         "--junit", str(tmp_path / "junit.xml"), str(good), str(slow)],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )
    assert done.returncode == 1
    assert "✔" in done.stderr and "slow.ipynb" in done.stderr
    from xml.etree import ElementTree as ET

    suites = ET.parse(tmp_path / "junit.xml").getroot().findall("testsuite")
    assert [s.get("failures") for s in suites] == ["0", "1"]
    failure = suites[1].find("testcase/failure")
    assert "exit status 130" in failure.get("message")
    assert (tmp_path / "out" / "good.ipynb").exists() and (tmp_path / "out" / "slow.ipynb").exists()


PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-o", "addopts="]


def test_pytest_plugin_passing_notebook(tmp_path, installed_kernelspec):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "lab.ipynb", *PASSING)
    make_notebook(folder / "nochecks.ipynb", "echo nothing to check")
    done = subprocess.run([sys.executable, "-m", "pytest", *PYTEST_ARGS, "--workshop", str(folder), "-vv"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lab.ipynb::cell 2:stdout /^hello/ PASSED" in done.stdout
    assert "lab.ipynb::cell 3:made PASSED" in done.stdout
    assert "3 passed" in done.stdout


def test_pytest_plugin_failing_notebook(tmp_path, installed_kernelspec):
    nb = make_notebook(tmp_path / "broken.ipynb", *PASSING, *FAILING)
    done = subprocess.run([sys.executable, "-m", "pytest", *PYTEST_ARGS, "--workshop", str(nb)],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path, env=clean_env())
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "2 failed, 3 passed" in out
    # A readable failure: the command, what was expected, what the cell gave.
    assert "cell 4 (id c3): check stdout /^bye/: stdout does not match /^bye/" in out
    assert "command:\n    echo hello\nexpected: stdout matching /^bye/\ngot: hello" in out
    assert "cell 5 (id c4): check there: the file is not there" in out
    assert "test -f /nonexistent-workshop-file" in out


@pytest.mark.parametrize("content, message", [
    ("{oops", "not a readable notebook"),
    (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3"}},
                 "cells": []}), "'python3' kernel"),
])
def test_workshop_run_bad_notebooks(tmp_path, content, message):
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "workshop", "run", "--junit", str(tmp_path / "j.xml"), str(path)],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 1
    assert message in done.stderr
    assert (tmp_path / "j.xml").read_text().count("<error") == 1


def test_run_of_an_old_notebook_without_cell_ids_still_checks(tmp_path, installed_kernelspec):
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = 4
    nb.metadata.kernelspec = KERNELSPEC
    nb.cells = [nbformat.v4.new_code_cell("%expect stdout /^bye/\necho hello")]
    for cell in nb.cells:
        cell.pop("id", None)
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(nb))
    done = subprocess.run([sys.executable, "-m", "workshop", "run", str(path)],
                          capture_output=True, text=True, timeout=120, env=clean_env())
    assert done.returncode == 1, done.stderr
    assert "0/1 checks passed" in done.stderr


def test_run_never_overwrites_its_source_and_errors_are_sentences(tmp_path, installed_kernelspec):
    path = make_notebook(tmp_path / "lab.ipynb", "echo hi")
    before = path.read_text()
    done = subprocess.run([sys.executable, "-m", "workshop", "run", str(path), "--out", str(tmp_path / "." / "")],
                          capture_output=True, text=True, timeout=120, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert path.read_text() == before and (tmp_path / "lab.out.ipynb").exists()
    # the kernel's ports are on loopback: no warning about eavesdroppers on every run
    assert "without encryption" not in done.stderr
    bad = subprocess.run([sys.executable, "-m", "workshop", "run", str(path), "--junit", "/nonexistent/dir/j.xml"],
                         capture_output=True, text=True, timeout=120, env=clean_env())
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "/nonexistent/dir/j.xml: No such file or directory" in bad.stderr
    target = subprocess.run([sys.executable, "-m", "workshop", "run", str(path), "--target", "bogus:x"],
                            capture_output=True, text=True, timeout=120, env=clean_env())
    assert target.returncode == 1 and "--target bogus:x: unknown target" in target.stderr


def test_a_malformed_record_does_not_stop_grading(tmp_path, installed_kernelspec):
    from workshop.batch import grade

    ref = make_notebook(tmp_path / "ref.ipynb", "%expect stdout /^hello/\necho hello")
    subprocess.run([sys.executable, "-m", "workshop", "run", str(ref), "--out", str(tmp_path / "out")],
                   capture_output=True, timeout=120, env=clean_env(), check=True)
    good = tmp_path / "out" / "ref.ipynb"
    data = json.loads(good.read_text())
    for output in data["cells"][0]["outputs"]:
        if RECORD in output.get("data", {}):
            output["data"][RECORD]["checks"] = 5
            output["data"][RECORD]["exit_status"] = "x"
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps(data))
    results = {r["student"]: r for r in grade(ref, [good, bad]).results}
    assert results["ref"]["total"] == results["ref"]["max"] == 1
    assert results["bad"]["total"] == 0 and results["bad"]["flags"][0]["kind"] == "unreadable"


@pytest.mark.parametrize("ip, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_unencrypted_tcp_warning_stays_for_ports_off_loopback(installed_kernelspec, tmp_path, ip, warned):
    """Only a kernel whose ports are on loopback drops ipykernel's warning."""
    from jupyter_client import KernelManager

    manager = KernelManager(kernel_name="workshop", ip=ip, connection_file=str(tmp_path / "kernel.json"))
    log = open(tmp_path / "kernel.log", "wb")
    manager.start_kernel(stdout=log, stderr=log, env=clean_env())
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        log.close()
    assert ("without encryption" in (tmp_path / "kernel.log").read_text()) is warned
