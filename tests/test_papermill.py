"""papermill with the workshop kernel: parameters become quoted shell variables,
`--help-notebook` lists them, and `--engine workshop` sends cell ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from harness import RECORD_MIME, clean_env

pytestmark = pytest.mark.slow

pytest.importorskip("papermill", reason="papermill is in the test extra: pip install -e '.[test]'")

KERNELSPEC = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
PARAMETERS = "greeting='hello'  # what to print\ncount=2  # how many times\nnames=(ann bob)\nloud=false"
BODY = 'for i in $(seq "$count"); do echo "$greeting ${names[1]} $loud"; done\n%expect stdout /./'


def lab(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    params = nbformat.v4.new_code_cell(PARAMETERS, id="params")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(BODY, id="body")]
    nbformat.write(nb, str(path))
    return path


def papermill(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papermill", *map(str, args)], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env=clean_env())


def outputs(path: Path) -> dict[str, tuple[str, dict | None]]:
    """Each cell's stdout and record, by cell id (the injected cell under its tag)."""
    found = {}
    for cell in json.loads(path.read_text())["cells"]:
        key = "injected" if "injected-parameters" in cell["metadata"].get("tags", []) else cell["id"]
        stdout = "".join("".join(o["text"]) for o in cell["outputs"] if o.get("name") == "stdout")
        record = next((o["data"][RECORD_MIME] for o in cell["outputs"] if RECORD_MIME in o.get("data", {})), None)
        found[key] = (stdout, record)
    return found


def test_parameters_are_shell_variables_quoted_as_data(tmp_path, installed_kernelspec):
    nb = lab(tmp_path / "lab.ipynb")
    hostile = "it's $(touch PWNED); `touch PWNED2` \"quoted\""
    done = papermill(nb, tmp_path / "out.ipynb", "-p", "greeting", hostile, "-p", "count", "3",
                     "-y", "names: ['x y', z]", "-p", "loud", "True", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "does not support parameter introspection" not in done.stderr
    assert "unknown parameter" not in done.stderr.lower()
    found = outputs(tmp_path / "out.ipynb")
    assert found["body"][0] == f"{hostile} z true\n" * 3
    assert found["injected"][1]["status"] == "ok"
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()


def test_help_notebook_lists_the_parameters_with_types_and_help(tmp_path):
    done = papermill("--help-notebook", lab(tmp_path / "lab.ipynb"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for expected in ("greeting: str (default 'hello') what to print", "count: int (default 2) how many times",
                     "names: list (default (ann bob))", "loud: bool (default false)"):
        assert expected in text, done.stdout
    assert "does not support parameter introspection" not in done.stdout + done.stderr


def test_a_parameter_that_is_no_shell_name_is_refused_in_one_sentence(tmp_path, installed_kernelspec):
    done = papermill(lab(tmp_path / "lab.ipynb"), tmp_path / "out.ipynb", "-p", "my-name", "x", cwd=tmp_path)
    assert done.returncode != 0
    assert "the parameter 'my-name' is not a shell variable name" in done.stderr
    assert not (tmp_path / "out.ipynb").exists() or "my-name" not in (tmp_path / "out.ipynb").read_text()


def test_the_workshop_engine_sends_cell_ids_the_default_one_does_not(tmp_path, installed_kernelspec):
    nb = lab(tmp_path / "lab.ipynb")
    plain = papermill(nb, tmp_path / "plain.ipynb", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert [r["cell_id"] for _, r in outputs(tmp_path / "plain.ipynb").values()] == [None, None]
    engine = papermill("--engine", "workshop", nb, tmp_path / "ids.ipynb", "-p", "count", "1", cwd=tmp_path)
    assert engine.returncode == 0, engine.stderr
    found = outputs(tmp_path / "ids.ipynb")
    assert found["params"][1]["cell_id"] == "params" and found["body"][1]["cell_id"] == "body"
    assert found["body"][0] == "hello bob false\n"
