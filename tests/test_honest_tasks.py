"""Tasks that only the student's own work in its place passes, that give no answer
away, and that forgive a wrong first try; all on the shipped notebooks.

- A task cell edited outside its solution region (notebook 1's `mutate` without
  its `%%chroot rootfs` line, done from the host) is flagged
  `edited-outside-solution` by a real `workshop grade --rerun` and its checks
  earn nothing; an edit inside the region, and blank lines or trailing spaces
  at its edges, are not flagged.
- The explanations that answer a prediction are in the reference, not in the
  student copy, and come back on the feedback page.
- Notebook 1's build task: the right answer after a wrong one passes, the check
  says what a stale link points to, and hand-made or junk links fail it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from assignment_lab import KERNELSPEC, source_cells
from harness import KernelHarness, clean_env
from test_notebooks import NOTEBOOKS, leftovers_cleanup

from workshop.assign import prepare, release
from workshop.batch import grade
from workshop.errors import AssignmentError
from workshop.feedback import feedback_html
from workshop.records import multiline_text
from workshop.tasks import CODE, solution_regions

pytestmark = pytest.mark.slow

NB01 = next(p for p in NOTEBOOKS if p.stem == "01-rootfs-and-chroot")


def root_only():
    if os.geteuid() != 0:
        pytest.skip("the workshop notebooks need root")


def _solutions(reference: dict) -> dict[str, str]:
    """The reference's solution of each code task (the text of its one region), by cell id."""
    found = {}
    for cell in reference["cells"]:
        lines = multiline_text(cell["source"]).split("\n")
        regions, _ = solution_regions(lines, CODE)
        if cell["cell_type"] == "code" and len(regions) == 1:
            start, end = regions[0]
            found[cell["id"]] = "\n".join(lines[start + 1 : end])
    return found


def _submission(student: dict, path: Path, answers: dict[str, str], edits: dict[str, tuple[str, str]]) -> Path:
    nb = json.loads(json.dumps(student))
    for cell in nb["cells"]:
        source = multiline_text(cell["source"])
        if cell["id"] in answers:
            assert "# YOUR CODE HERE" in source
            source = source.replace("# YOUR CODE HERE", answers[cell["id"]])
        if cell["id"] in edits:
            old, new = edits[cell["id"]]
            assert old in source, (cell["id"], old)
            source = source.replace(old, new)
        cell["source"] = source
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


# ---- edits outside a solution region -------------------------------------------------
def test_a_task_done_outside_its_chroot_earns_nothing_in_a_real_rerun(tmp_path, installed_kernelspec):
    root_only()
    try:
        rel = release([NB01], tmp_path / "release", target="local")[0]  # the reference is verified by a run
        student = rel.student
        solutions = _solutions(rel.reference)
        mutate = next(c for c in student["cells"] if c["id"] == "nb01-mutate")
        assert "%%chroot rootfs\n# YOUR CODE HERE" in multiline_text(mutate["source"])
        subs = tmp_path / "subs"
        subs.mkdir()
        # honest: the reference's answers; inside mutate's region a comment of the student's own, and blank
        # lines and trailing spaces at the region's edges
        honest = dict(solutions, **{"nb01-mutate": "\n  \n# my own comment\n" + solutions["nb01-mutate"] + "   \n\n"})
        _submission(student, subs / "honest.ipynb", honest, {"nb01-mutate": ("%%chroot rootfs", "%%chroot rootfs  ")})
        # the shortcut: no chroot, the same changes made from the host
        host_side = 'echo "container 1 was here" > rootfs/root/note\nrm rootfs/bin/vi'
        _submission(student, subs / "hostside.ipynb", dict(solutions, **{"nb01-mutate": host_side}),
                    {"nb01-mutate": ("%%chroot rootfs\n", "")})
        done = subprocess.run(
            [sys.executable, "-m", "workshop", "grade", str(tmp_path / "release" / "reference" / NB01.name), str(subs),
             "--rerun", "--target", "local", "--run-student-code-on-this-machine", "--json", str(tmp_path / "g.json")],
            capture_output=True, text=True, timeout=900, env={**clean_env(), "COLUMNS": "250"})
    finally:
        leftovers_cleanup()
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads((tmp_path / "g.json").read_text())
    results = {r["student"]: r for r in report["submissions"]}
    task = next(t for t in report["tasks"] if t["label"] == "mutate")
    assert len(task["checks"]) >= 2

    honest = results["honest"]
    assert [f for f in honest["flags"] if f["kind"] == "edited-outside-solution"] == []
    assert [k for k in task["checks"] if not honest["checks"][k]["passed"]] == [], honest["checks"]

    shortcut = results["hostside"]
    flags = [f for f in shortcut["flags"] if f["kind"] == "edited-outside-solution"]
    assert len(flags) == 1 and "nb01-mutate" in flags[0]["cell"] and "%%chroot rootfs" in flags[0]["message"]
    assert {k: shortcut["checks"][k]["earned"] for k in task["checks"]} == dict.fromkeys(task["checks"], 0.0)
    assert all("edited outside its solution region" in shortcut["checks"][k]["message"] for k in task["checks"])
    # the other tasks of the same submission are graded as usual
    others = [k for t in report["tasks"] if t["label"] != "mutate" for k in t["checks"]]
    assert others and all(shortcut["checks"][k]["passed"] for k in others)
    assert "edited-outside-solution" in done.stdout


# ---- answers kept out of the student copy ------------------------------------------------
def _predictions() -> list[tuple[Path, str]]:
    found = []
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        found += [(path, c["metadata"]["workshop"]["name"]) for c in nb["cells"]
                  if "predict" in str(c.get("metadata", {}).get("workshop", {}).get("name", ""))]
    return found


def test_every_prediction_task_has_an_explanation_the_release_leaves_out():
    predictions = _predictions()
    assert {p.stem for p, _ in predictions} >= {"03-namespaces", "05-oci-runtimes"}
    for path, name in predictions:
        rel = prepare(path)
        task = next(t for t in rel.ref.tasks if t.label == name)
        assert task.explanations, f"{path.name}: the prediction {name} has no answer region"
        student, reference = json.dumps(rel.student), json.dumps(rel.reference)
        for text in task.explanations:
            for sentence in re.split(r"(?<=\.) ", text):
                if len(sentence) > 20:
                    assert json.dumps(sentence)[1:-1] not in student, f"{path.name}: {sentence!r} is in the release"
                    assert json.dumps(sentence)[1:-1] in reference
        assert "BEGIN ANSWER" not in student


def test_nb03_release_does_not_give_the_predicted_values_away():
    rel = prepare(next(p for p in NOTEBOOKS if p.stem == "03-namespaces"))
    student = {c["id"]: multiline_text(c["source"]) for c in rel.student["cells"]}
    reference = {c["id"]: multiline_text(c["source"]) for c in rel.reference["cells"]}
    # the next code cell's expectations and the next Markdown cell's question
    assert "shell pid: 1" not in student["nb03-pid-fork"] and "shell pid: 1" in reference["nb03-pid-fork"]
    assert "PID 1" not in student["nb03-why-host"] and "host's processes" not in student["nb03-why-host"]
    assert "first process" not in student["nb03-predict-intro"]
    assert "Compare what the cell above printed with your prediction" in student["nb03-why-host"]


def test_the_feedback_page_brings_the_explanation_back(tmp_path):
    cells = source_cells()
    cells.insert(6, nbformat.v4.new_markdown_cell(
        "<!-- BEGIN ANSWER count -->\nThree lines: `wc -l` counts newlines.\n<!-- END ANSWER -->\nOn to the question.",
        id="count-seen"))
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC, "workshop": {"target": "local"}}, cells=cells)
    nbformat.write(nb, str(tmp_path / "lab.ipynb"))
    release([tmp_path / "lab.ipynb"], tmp_path / "out", verify_reference=False)
    student = (tmp_path / "out" / "student" / "lab.ipynb").read_text()
    assert "wc -l` counts newlines" not in student and "On to the question." in student
    assert "wc -l` counts newlines" in (tmp_path / "out" / "reference" / "lab.ipynb").read_text()
    report = grade(tmp_path / "out" / "reference" / "lab.ipynb", [tmp_path / "out" / "student" / "lab.ipynb"])
    page = feedback_html(report, report.results[0], "lab")
    count = page[page.index(">count<"):]
    assert "Explanation" in count and "Three lines: `wc -l` counts newlines." in count
    assert "counts newlines" not in page[:page.index(">count<")]


@pytest.mark.parametrize(("text", "problem"), [
    ("<!-- BEGIN ANSWER nosuch -->\nx\n<!-- END ANSWER -->", "names the task 'nosuch', which the notebook does not"),
    ("<!-- BEGIN ANSWER -->\nx", "<!-- BEGIN ANSWER --> has no <!-- END ANSWER --> below it"),
])
def test_an_answer_region_that_answers_nothing_is_refused(tmp_path, text, problem):
    cells = source_cells()
    cells[0].source = text
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC}, cells=cells)
    nbformat.write(nb, str(tmp_path / "lab.ipynb"))
    with pytest.raises(AssignmentError, match=re.escape(problem)):
        prepare(tmp_path / "lab.ipynb")


# ---- notebook 1's build task ---------------------------------------------------------------
def _nb01_cells() -> dict[str, str]:
    return {c["id"]: multiline_text(c["source"]) for c in json.loads(NB01.read_text())["cells"]}


def _checks(result) -> dict[str, dict]:
    assert result.record is not None, result.stdout + result.stderr
    return {c["name"]: c for c in result.record["checks"]}


@pytest.fixture
def nb01_kernel(installed_kernelspec):
    root_only()
    kernel = KernelHarness(clean_env())
    cells = _nb01_cells()
    try:
        for cell_id in ("nb01-workdir", "nb01-busybox"):
            assert kernel.run(cells[cell_id]).status == "ok"
        yield kernel, cells["nb01-build"]
    finally:
        kernel.shutdown()
        leftovers_cleanup()


def _build(source: str, answer: str) -> str:
    lines = source.split("\n")
    [(start, end)], _ = solution_regions(lines, CODE)
    return "\n".join(lines[:start] + [answer] + lines[end + 1:])


def test_the_build_task_forgives_a_wrong_first_try(nb01_kernel):
    kernel, build = nb01_kernel
    # the wrong first try: --install -s run by the host's busybox, links into rootfs/bin to the host's path
    wrong = ('mkdir -p rootfs/bin rootfs/sbin rootfs/usr/bin rootfs/usr/sbin\ncp "$BUSYBOX" rootfs/bin/busybox\n'
             'busybox --install -s rootfs/bin')
    first = _checks(kernel.run(_build(build, wrong)))
    host_path = os.path.realpath(subprocess.run(["sh", "-c", "command -v busybox"], capture_output=True,
                                                text=True).stdout.strip())
    assert not first["applet-links"]["passed"]
    message = first["applet-links"]["message"]
    assert f"points to {host_path}, not /bin/busybox" in message and "run the cell again" in message
    # the right answer, in the same shell, right after
    second = _checks(kernel.run(build))
    assert {name: c["message"] for name, c in second.items() if not c["passed"]} == {}


def test_hand_made_and_junk_links_do_not_pass_the_build_task(nb01_kernel):
    kernel, build = nb01_kernel
    fake = ('mkdir -p rootfs/bin rootfs/sbin rootfs/usr/bin rootfs/usr/sbin\ncp "$BUSYBOX" rootfs/bin/busybox\n'
            'for a in bin/sh usr/bin/tr sbin/ifconfig; do ln -s /bin/busybox rootfs/$a; done\n'
            'for i in $(seq 50); do ln -s /bin/busybox rootfs/bin/junk$i; done')
    checks = _checks(kernel.run(_build(build, fake)))
    assert not checks["applet-links"]["passed"]
    assert re.search(r"\d+ of busybox's \d+ applets have no link in rootfs", checks["applet-links"]["message"])
    # every applet linked by hand, and junk besides: the junk is named
    junk = ('mkdir -p rootfs/bin rootfs/sbin rootfs/usr/bin rootfs/usr/sbin\ncp "$BUSYBOX" rootfs/bin/busybox\n'
            'chroot rootfs /bin/busybox --install -s\nln -s /bin/busybox rootfs/bin/junk')
    checks = _checks(kernel.run(_build(build, junk)))
    assert not checks["applet-links"]["passed"]
    assert "rootfs/bin/junk is a link that busybox --install -s does not make" in checks["applet-links"]["message"]
