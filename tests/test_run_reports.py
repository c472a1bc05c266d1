"""`workshop run` says which cell failed and why, naming every cell one way:
``cell N (id ID)``, N its number among the code cells."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import nbformat
import pytest
from harness import clean_env

pytestmark = pytest.mark.slow

KERNELSPEC = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
# Any way of naming a cell by number: "cell2", "cell[2]", "cell 2", "cells 2"...
ANY_CELL_NAME = re.compile(r"\bcell\s*\[?\d+\]?(?: \([^)]*\))?")
ONE_FORM = re.compile(r"cell \d+ \(id [\w-]+\)")


def notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.cells = [nbformat.v4.new_markdown_cell("# a lab", id="intro")]
    nb.cells += [nbformat.v4.new_code_cell(source, id=f"code{i}") for i, source in enumerate(sources, 1)]
    nbformat.write(nb, str(path))
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", "run", *map(str, args)], capture_output=True,
                          text=True, timeout=180, env=clean_env(COLUMNS="250"))


def cell_names(text: str) -> list[str]:
    return ANY_CELL_NAME.findall(text)


def test_a_failed_cell_is_named_with_its_reason_in_the_summary_and_junit(tmp_path, installed_kernelspec):
    lab = notebook(tmp_path / "fail.ipynb", "echo hi\n%expect stdout /hi/", "echo before\nls /nonexistent-dir-7",
                   "echo after")
    done = run(lab, "--out", tmp_path / "out", "--junit", tmp_path / "j.xml")
    assert done.returncode == 1
    summary = [line for line in done.stderr.splitlines() if "✘" in line]
    assert "✘ " + str(lab) + ": cell 2 (id code2) failed; 1 cell not run; 1/1 checks passed" in summary[0]
    assert "✘ cell 2 (id code2): exit status 2" in summary[1]
    assert "No such file or directory" in summary[1]  # why: the last line the cell wrote on stderr
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"cell 1 (id code1): stdout /hi/", "cell 2 (id code2)"}
    error = cases["cell 2 (id code2)"].find("error")
    assert error.get("message").startswith("cell 2 (id code2): exit status 2")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "1")
    everything = done.stderr + (tmp_path / "j.xml").read_text()
    assert cell_names(everything) and all(ONE_FORM.fullmatch(name) for name in cell_names(everything))


def test_keep_going_reports_the_cell_error_not_zero_checks(tmp_path, installed_kernelspec):
    lab = notebook(tmp_path / "fail.ipynb", "false", "echo still runs")
    done = run(lab, "--keep-going", "--out", tmp_path / "out", "--junit", tmp_path / "j.xml")
    assert done.returncode == 1
    assert "0/0 checks passed" not in done.stderr
    assert "cell 1 (id code1) failed; no checks" in done.stderr
    assert "✘ cell 1 (id code1): exit status 1" in done.stderr
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert [c.get("name") for c in suite.findall("testcase")] == ["cell 1 (id code1)"]


def test_a_failed_check_names_its_cell_and_check(tmp_path, installed_kernelspec):
    lab = notebook(tmp_path / "checks.ipynb", "echo hello\n%expect stdout /^bye/",
                   "%%check --name there\ntest -f /nonexistent-7 || echo 'FAIL: the file is not there'")
    done = run(lab, "--out", tmp_path / "out", "--junit", tmp_path / "j.xml")
    assert done.returncode == 1
    assert "✘ cell 1 (id code1): check stdout /^bye/: stdout does not match /^bye/" in done.stderr
    assert "✘ cell 2 (id code2): check there: the file is not there" in done.stderr
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    failure = suite.find("testcase[@name='cell 2 (id code2): there']/failure")
    assert failure.get("message") == "cell 2 (id code2): check there: the file is not there"
    everything = done.stderr + (tmp_path / "j.xml").read_text()
    assert all(ONE_FORM.fullmatch(name) for name in cell_names(everything))
