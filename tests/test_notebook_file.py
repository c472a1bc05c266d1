"""The notebook file the kernel reads for its session: its target and saved cells."""

from __future__ import annotations

import json

from workshop.notebook_file import NotebookFile
from workshop.tasks import record_task


def _save(path, target=None, cells=()):
    meta = {"workshop": {"target": target}} if target is not None else {}
    path.write_text(json.dumps({"cells": list(cells), "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))


def test_only_a_notebook_named_by_the_server_is_read():
    assert NotebookFile.named_by_server({}) is None
    assert NotebookFile.named_by_server({"JPY_SESSION_NAME": "console-1"}) is None
    assert NotebookFile.named_by_server({"JPY_SESSION_NAME": "/x/lab.ipynb"}).path == "/x/lab.ipynb"


def test_the_target_and_cells_follow_the_saved_file(tmp_path):
    path = tmp_path / "lab.ipynb"
    task = {"id": "t1", "cell_type": "code", "source": "", "metadata": {"workshop": {"task": {"points": 3}}}}
    _save(path, "qemu:lab", [task])
    saved = NotebookFile(str(path))
    assert saved.target() == "qemu:lab"
    assert record_task({"cellId": "t1"}, saved.cell) == {"task": {"points": 3.0}}
    assert record_task({"cellId": "other"}, saved.cell) == {}
    assert record_task({"cellId": "t1"}) == {}  # no notebook passed in: nothing is looked up
    _save(path, "", [])
    path.touch()
    assert saved.target() is None and saved.cell("t1") is None


def test_a_missing_or_broken_file_is_no_target(tmp_path):
    assert NotebookFile(str(tmp_path / "gone.ipynb")).target() is None
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert NotebookFile(str(broken)).target() is None and NotebookFile(str(broken)).cell("x") is None
    listed = tmp_path / "list.ipynb"
    listed.write_text("[1, 2]")
    assert NotebookFile(str(listed)).target() is None
