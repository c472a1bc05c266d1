"""Hostile files among the submissions: each is one row flagged unreadable with
one plain sentence, the others are graded, and nothing crashes or hangs."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness import clean_env
from test_grading import make_notebook

from workshop.batch import grade
from workshop.grading import grade_submission, load_reference
from workshop.outputs import Graded, requested, write_all

RECORD = "application/vnd.workshop.record+json"
SOURCES = {
    "setup": 'cd "$(mktemp -d)"\necho ready',
    "hello": "%expect exit 0\n%expect stdout /^hello/\necho hello",
    "made": "touch made\n%%check --name made\ntest -f made || echo 'FAIL: made is missing'",
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, installed_kernelspec):
    """A reference and the same notebook executed by the real kernel."""
    d = tmp_path_factory.mktemp("hostile")
    ref = make_notebook(d / "ref.ipynb", SOURCES)
    subprocess.run([sys.executable, "-m", "workshop", "run", str(ref), "--out", str(d / "out")],
                   capture_output=True, timeout=120, env=clean_env(), check=True)
    return ref, json.loads((d / "out" / "ref.ipynb").read_text())


def record_of(nb: dict, cell_id: str) -> dict:
    cell = next(c for c in nb["cells"] if c.get("id") == cell_id)
    return next(o["data"][RECORD] for o in cell["outputs"] if RECORD in o.get("data", {}))


def grade_one(ref: Path, folder: Path, bad: Path) -> tuple[dict, dict]:
    """Grade ``bad`` beside an honest copy; (bad's result, the honest one's)."""
    results = {r["path"]: r for r in grade(ref, [folder / "good.ipynb", bad]).results}
    return results[str(bad)], results[str(folder / "good.ipynb")]


def assert_one_sentence(result: dict, *words: str) -> str:
    assert [f["kind"] for f in result["flags"]] == ["unreadable"], result["flags"]
    message = result["flags"][0]["message"]
    assert "\n" not in message and len(message) < 400 and "Traceback" not in message
    assert result["error"] == message and result["total"] == 0
    assert all(not c["passed"] for c in result["checks"].values())
    for word in words:
        assert word in message, message
    return message


@pytest.fixture
def folder(tmp_path, executed):
    (tmp_path / "good.ipynb").write_text(json.dumps(executed[1]))
    return tmp_path


def test_deep_nesting_exhausting_the_json_parser(executed, folder):
    text = json.dumps(executed[1])[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    (folder / "deep.ipynb").write_text(text)
    bad, good = grade_one(executed[0], folder, folder / "deep.ipynb")
    assert_one_sentence(bad, "nested")
    assert good["total"] == good["max"] and good["flags"] == []


def test_nesting_below_the_parser_limit_but_too_deep_to_be_a_notebook(executed, folder):
    nb = copy.deepcopy(executed[1])
    deep: list = []
    node = deep
    for _ in range(900):
        node.append([])
        node = node[0]
    record_of(nb, "hello")["magics"] = deep
    (folder / "deep.ipynb").write_text(json.dumps(nb))
    bad, good = grade_one(executed[0], folder, folder / "deep.ipynb")
    assert_one_sentence(bad, "nested")
    assert good["total"] == good["max"]


@pytest.mark.parametrize("field, literal", [
    ("exit_status", "1e400"), ("exit_status", "-1e400"), ("duration", "NaN"), ("exit_status", "Infinity"),
    ("execution_count", "-Infinity"), ("exit_status", "1" + "0" * 5000),
])
def test_numbers_json_cannot_hold(executed, folder, field, literal):
    nb = copy.deepcopy(executed[1])
    record_of(nb, "hello")[field] = "@@NUMBER@@"
    (folder / "number.ipynb").write_text(json.dumps(nb).replace('"@@NUMBER@@"', literal))
    bad, good = grade_one(executed[0], folder, folder / "number.ipynb")
    assert_one_sentence(bad, "number")
    assert good["total"] == good["max"]


def test_a_file_name_that_is_not_utf8(executed, folder, tmp_path):
    name = os.fsdecode(b"caf\xe9-\xff.ipynb")
    (folder / name).write_text(json.dumps(executed[1]))
    report = grade(executed[0], [folder])
    results = {r["student"]: r for r in report.results}
    assert set(results) == {"good", "caf\ufffd-\ufffd"}
    assert_one_sentence(results["caf\ufffd-\ufffd"], "not valid UTF-8")
    assert results["good"]["total"] == results["good"]["max"]
    out = tmp_path / "reports"
    out.mkdir()
    asked = requested("grade", {"csv": out / "g.csv", "html": out / "g.html", "json": out / "g.json"})
    write_all(asked, Graded(report, None, "g"))  # every report can be written
    assert "caf\ufffd" in (out / "g.json").read_text(encoding="utf-8")


def blocked_writer(fifo: Path) -> threading.Thread:
    """A writer that stays blocked in open() until someone opens ``fifo`` for reading."""
    def write():
        with open(fifo, "w") as fh:
            fh.write("{}")

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_fifos_and_devices_are_refused_without_reading(executed, folder):
    fifo = folder / "fifo.ipynb"
    os.mkfifo(fifo)
    os.mknod(folder / "zero.ipynb", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: reading never ends
    (folder / "link.ipynb").symlink_to("/dev/zero")
    os.mkfifo(folder / "no-writer.ipynb")  # a plain open() for reading would hang on it
    writer = blocked_writer(fifo)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(executed[0]), str(folder),
                           "--json", str(folder / "report.json"), "--quiet"],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    results = {r["student"]: r for r in json.loads((folder / "report.json").read_text())["submissions"]}
    assert set(results) == {"good", "fifo", "zero", "link", "no-writer"}
    assert_one_sentence(results["fifo"], "FIFO")
    assert_one_sentence(results["no-writer"], "FIFO")
    assert_one_sentence(results["zero"], "device")
    assert_one_sentence(results["link"], "device")
    assert results["good"]["total"] == results["good"]["max"]
    time.sleep(0.2)
    assert writer.is_alive(), "the FIFO was opened for reading"
    with open(fifo) as fh:  # let the writer go
        fh.read()


def test_a_directory_named_like_a_notebook(executed, folder):
    inside = folder / "dir.ipynb"
    inside.mkdir()
    (inside / "inner.ipynb").write_text(json.dumps(executed[1]))
    for given in ([folder], [folder / "good.ipynb", inside]):
        results = {r["student"]: r for r in grade(executed[0], given).results}
        assert set(results) == {"good", "dir"}, given
        assert_one_sentence(results["dir"], "directory")
        assert results["good"]["total"] == results["good"]["max"]


def test_an_nbformat_3_notebook_says_how_to_convert(executed, folder):
    old = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "lab"},
           "worksheets": [{"cells": [{"cell_type": "code", "input": "echo hello", "outputs": []}]}]}
    (folder / "old.ipynb").write_text(json.dumps(old))
    bad, good = grade_one(executed[0], folder, folder / "old.ipynb")
    message = assert_one_sentence(bad, "format 3", "jupyter nbconvert --to notebook --nbformat 4")
    assert "old.ipynb" in message
    assert good["total"] == good["max"]


def test_a_huge_file_is_refused_before_it_is_read(executed, folder):
    huge = folder / "huge.ipynb"
    with open(huge, "wb") as fh:
        fh.write(b'{"cells": [')
        fh.truncate(300 * 2**20)  # sparse: 300 MiB that take no disk
    started = time.monotonic()
    bad, good = grade_one(executed[0], folder, huge)
    assert time.monotonic() - started < 10
    assert_one_sentence(bad, "MiB", "limit")
    assert good["total"] == good["max"]


def _set(path: list, value):
    def mutate(nb: dict) -> None:
        node = nb
        for key in path[:-1]:
            node = node[key] if not callable(key) else key(node)
        node[path[-1]] = value
    return mutate


def _hello(nb):
    return next(c for c in nb["cells"] if c.get("id") == "hello")


def _record(nb):
    return record_of(nb, "hello")


ODD = {
    "cells are numbers": _set(["cells"], [1, 2]),
    "a cell is a string": _set(["cells", 1], "echo hi"),
    "a cell is null": _set(["cells", 0], None),
    "notebook metadata is a list": _set(["metadata"], []),
    "kernelspec is a string": _set(["metadata", "kernelspec"], "workshop"),
    "cell metadata is a list": _set([_hello, "metadata"], ["x"]),
    "cell source is a number": _set([_hello, "source"], 5),
    "cell source lines are numbers": _set([_hello, "source"], [1, 2]),
    "cell id is a list": _set([_hello, "id"], ["hello"]),
    "outputs is a string": _set([_hello, "outputs"], "hello"),
    "an output is a number": _set([_hello, "outputs"], [7]),
    "output data is a list": _set([_hello, "outputs", 0, "data"], [1]),
    "stream text is a dict": _set([_hello, "outputs", 0, "text"], {"a": 1}),
    "the record is a list": _set([_hello, "outputs", -1, "data", RECORD], [1]),
    "record checks is a number": _set([_record, "checks"], 5),
    "a recorded check is a string": _set([_record, "checks"], ["passed"]),
    "record stdout is a string": _set([_record, "stdout"], "sha256:0"),
    "exit status is a string": _set([_record, "exit_status"], "0"),
    "exit status is a boolean": _set([_record, "exit_status"], True),
    "execution count is a dict": _set([_record, "execution_count"], {}),
    "session is a list": _set([_record, "session"], ["s"]),
    "cell_id is a number": _set([_record, "cell_id"], 3),
}


@pytest.mark.parametrize("case", list(ODD))
def test_non_objects_in_odd_places(executed, folder, case):
    nb = copy.deepcopy(executed[1])
    ODD[case](nb)
    (folder / "odd.ipynb").write_text(json.dumps(nb))
    bad, good = grade_one(executed[0], folder, folder / "odd.ipynb")
    assert_one_sentence(bad)
    assert good["total"] == good["max"] and good["flags"] == []


def test_a_bad_file_is_still_one_row_in_a_rerun_and_on_the_command_line(executed, folder):
    (folder / "deep.ipynb").write_text("[" * 100_000)
    ref = load_reference(executed[0])
    assert grade_submission(ref, folder / "deep.ipynb")["flags"][0]["kind"] == "unreadable"
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(executed[0]), str(folder),
                           "--csv", str(folder / "g.csv")], capture_output=True, text=True, timeout=60,
                          env=clean_env(COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "nested" in done.stderr
    assert len((folder / "g.csv").read_text().splitlines()) == 3
