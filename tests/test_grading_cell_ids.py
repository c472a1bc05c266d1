"""A record with a null, copied, duplicated or forged cell id never earns another cell's points.

nbconvert and papermill send no cell id, so their records have ``cell_id: null``;
the grader ties a record to its cell by the digest of the code that ran.  The
attacks start from real runs (nbconvert, `workshop run`) and edit the JSON as a
student could.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from harness import RECORD_MIME, clean_env

from workshop.grading import grade_submission, load_reference

KERNELSPEC = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
GIVEN = "echo 42"  # a cell whose output is what the task's check wants
TASK = "%expect stdout /^42$/\necho $((6 * 7))"
KEY = "cell 2:stdout /^42$/"


def write(path: Path, *cells: tuple[str, str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.cells = [nbformat.v4.new_code_cell(source, id=cell_id) for cell_id, source in cells]
    nbformat.write(nb, str(path))
    return path


def nbconvert(path: Path) -> dict:
    out = path.with_name(path.stem + "-run.ipynb")
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                    "--ExecutePreprocessor.kernel_name=workshop", "--output", out.name, str(path)],
                   check=True, capture_output=True, timeout=180, env=clean_env())
    return json.loads(out.read_text())


def workshop_run(path: Path) -> dict:
    out = path.parent / "out"
    subprocess.run([sys.executable, "-m", "workshop", "run", "--keep-going", "--out", str(out), str(path)],
                   capture_output=True, timeout=180, env=clean_env())
    return json.loads((out / path.name).read_text())


def record_of(cell: dict) -> dict:
    return next(o["data"][RECORD_MIME] for o in cell["outputs"] if RECORD_MIME in o.get("data", {}))


def grade(tmp_path: Path, nb: dict, name: str) -> dict:
    path = tmp_path / f"{name}.ipynb"
    path.write_text(json.dumps(nb))
    return grade_submission(load_reference(tmp_path / "reference.ipynb"), path, name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, installed_kernelspec):
    base = tmp_path_factory.mktemp("ids")
    write(base / "reference.ipynb", ("given", GIVEN), ("task", TASK))
    wrong = write(base / "wrong.ipynb", ("given", GIVEN), ("task", "%expect stdout /^42$/\necho 41"))
    right = write(base / "right.ipynb", ("given", GIVEN), ("task", TASK))
    (base / "ws").mkdir()
    return base, {"nbconvert-wrong": nbconvert(wrong), "nbconvert-right": nbconvert(right),
                  "run-wrong": workshop_run(write(base / "ws" / "wrong.ipynb", ("given", GIVEN),
                                                  ("task", "%expect stdout /^42$/\necho 41")))}


def test_nbconvert_records_have_no_cell_id_and_still_grade_in_full(runs):
    base, nbs = runs
    assert [record_of(c)["cell_id"] for c in nbs["nbconvert-right"]["cells"]] == [None, None]
    result = grade(base, nbs["nbconvert-right"], "right")
    assert result["checks"][KEY]["passed"] and result["flags"] == []
    assert not grade(base, nbs["nbconvert-wrong"], "wrong")["checks"][KEY]["passed"]


def copy_outputs(nb: dict, source: str = "given", target: str = "task") -> dict:
    nb = copy.deepcopy(nb)
    cells = {c["id"]: c for c in nb["cells"]}
    cells[target]["outputs"] = copy.deepcopy(cells[source]["outputs"])
    return nb


def test_outputs_copied_from_another_cell_under_a_null_id_earn_nothing(runs):
    base, nbs = runs
    attack = copy_outputs(nbs["nbconvert-wrong"])
    result = grade(base, attack, "copier")
    assert not result["checks"][KEY]["passed"]
    assert {"record-duplicated"} <= {f["kind"] for f in result["flags"]}


def test_a_copied_record_given_a_fresh_run_number_still_earns_nothing(runs):
    """The copy no longer shares its run with the original: the code that ran gives it away."""
    base, nbs = runs
    attack = copy_outputs(nbs["nbconvert-wrong"])
    task = next(c for c in attack["cells"] if c["id"] == "task")
    record_of(task)["execution_count"] = 99
    result = grade(base, attack, "renumbered")
    assert not result["checks"][KEY]["passed"]
    assert ("record-moved", "cell 2 (id task)") in {(f["kind"], f["cell"]) for f in result["flags"]}


def test_a_forged_cell_id_earns_nothing(runs):
    base, nbs = runs
    attack = copy_outputs(nbs["run-wrong"])
    task = next(c for c in attack["cells"] if c["id"] == "task")
    assert record_of(task)["cell_id"] == "given"  # workshop run names the cell
    record_of(task)["cell_id"] = "task"
    record_of(task)["execution_count"] = 99
    result = grade(base, attack, "forger")
    assert not result["checks"][KEY]["passed"]
    assert "record-moved" in {f["kind"] for f in result["flags"]}


def test_a_duplicated_cell_id_earns_nothing(runs):
    base, nbs = runs
    attack = copy.deepcopy(nbs["nbconvert-right"])
    attack["cells"].insert(0, copy.deepcopy(attack["cells"][1]))  # two cells say they are the task
    result = grade(base, attack, "twins")
    assert not result["checks"][KEY]["passed"]
    assert "cell-id-duplicated" in {f["kind"] for f in result["flags"]}


def test_a_null_id_record_of_no_cell_code_earns_nothing(runs):
    """Code edited after an nbconvert run: nothing ties the record to the cell any more."""
    base, nbs = runs
    edited = copy.deepcopy(nbs["nbconvert-right"])
    task = next(c for c in edited["cells"] if c["id"] == "task")
    task["source"] = "%expect stdout /^42$/\necho 42  # not what ran"
    result = grade(base, edited, "edited")
    assert not result["checks"][KEY]["passed"]
    assert "record-unmatched" in {f["kind"] for f in result["flags"]}
