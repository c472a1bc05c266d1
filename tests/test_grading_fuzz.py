"""Random corruptions of a real executed notebook never raise out of grading,
never hang it, and every report of the result can be written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from harness import clean_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_grading import make_notebook

from workshop.grading import Report, grade_submission, load_reference
from workshop.reports import print_table, to_csv, to_html, to_json

pytestmark = pytest.mark.slow

SOURCES = {
    "setup": 'cd "$(mktemp -d)"\necho ready',
    "hello": "%expect exit 0\n%expect stdout /^hello/\n%expect stderr empty\nprintf 'hello\\r\\nwor\\bld\\n'",
    "made": "touch made\n%%check --points 2 --name made\ntest -f made || echo 'FAIL: made is missing'",
    "locked": "echo locked",
}
META = {"locked": {"workshop": {"locked": True}}}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, installed_kernelspec):
    d = tmp_path_factory.mktemp("fuzz")
    ref = make_notebook(d / "ref.ipynb", SOURCES, **META)
    subprocess.run([sys.executable, "-m", "workshop", "run", str(ref), "--out", str(d / "out")],
                   capture_output=True, timeout=120, env=clean_env(), check=True)
    text = (d / "out" / "ref.ipynb").read_text()
    reference = load_reference(ref)
    assert grade_submission(reference, d / "out" / "ref.ipynb")["total"] == reference.max_points
    return reference, json.loads(text)


def json_values():
    leaves = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**4000)
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
              | st.sampled_from(["", "sha256:0", "code", "stream", "stdout", "stderr", "hello",
                                 "application/vnd.workshop.record+json", "\r\b\x1b[31m", "<script>x</script>"]))
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def slots(node):
    """Every (container, key) of a JSON tree."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in list(items):
        yield node, key
        yield from slots(value)


@st.composite
def corrupted(draw, nb: dict) -> bytes:
    nb = json.loads(json.dumps(nb))
    for _ in range(draw(st.integers(1, 4))):
        places = list(slots(nb))
        if not places:
            break
        container, key = places[draw(st.integers(0, len(places) - 1))]
        action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "delete":
            del container[key]
        elif action == "duplicate" and isinstance(container, list):
            container.insert(key, container[key])
        else:
            container[key] = draw(json_values())
    data = json.dumps(nb, allow_nan=True).encode()
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if how == "truncate":
            data = data[:at]
        elif how == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        else:
            data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    return data


def check_result(reference, result: dict) -> None:
    assert isinstance(result["total"], float) and math.isfinite(result["total"])
    assert 0 <= result["total"] <= reference.max_points
    assert set(result["checks"]) == {c.key for c in reference.checks}
    for flag in result["flags"]:
        assert isinstance(flag["kind"], str) and isinstance(flag["message"], str)
    report = Report(reference, [result])
    to_csv(report), to_json(report), to_html(report)
    from rich.console import Console

    with open("/dev/null", "w") as sink:
        print_table(report, Console(file=sink, width=200))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_corrupted_notebooks_grade_without_raising(executed, data):
    reference, nb = executed
    raw = data.draw(corrupted(nb))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.ipynb"
        path.write_bytes(raw)
        started = time.monotonic()
        result = grade_submission(reference, path)
        assert time.monotonic() - started < 5, "grading one small notebook took seconds"
    check_result(reference, result)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_corrupted_records_grade_without_raising(executed, data):
    """Mutations aimed at the records, where most of the grading logic reads."""
    reference, nb = executed
    nb = json.loads(json.dumps(nb))
    mime = "application/vnd.workshop.record+json"
    records = [o["data"][mime] for c in nb["cells"] for o in c.get("outputs", []) if mime in o.get("data", {})]
    for _ in range(data.draw(st.integers(1, 4))):
        record = data.draw(st.sampled_from(records))
        key = data.draw(st.sampled_from(sorted(record) + ["extra"]))
        record[key] = data.draw(json_values())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.ipynb"
        path.write_text(json.dumps(nb, allow_nan=True))
        result = grade_submission(reference, path)
    check_result(reference, result)
