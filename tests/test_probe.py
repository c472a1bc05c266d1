"""`workshop probe`: shortcut answers run through real reruns on this machine, and the checks they pass named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workshop.probe import shortcuts

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
LOCAL = ("--target", "local", "--run-student-code-on-this-machine")

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="reruns on the local target contain kernels in cgroups"), pytest.mark.slow, pytest.mark.root]

GREET = "%expect stdout /hello/\n### BEGIN SOLUTION\necho hello\n### END SOLUTION"
BOX = ("### BEGIN SOLUTION\nmkdir -p box\necho hello | tee box/note\n### END SOLUTION\n"
       "%%check --name note-says-hello --points 2\n"
       "[ \"$(cat box/note 2>/dev/null)\" = hello ] || echo \"FAIL: box/note does not say hello\"\n"
       "%%check --hidden --name box-is-a-directory\n[ -d box ] || echo \"FAIL: there is no directory box\"")
COUNT = ("### BEGIN SOLUTION\nprintf 'a\\nb\\nc\\n' > lines.txt\nsort lines.txt > sorted.txt\n### END SOLUTION\n"
         "%%check --name three-lines\n[ \"$(wc -l < lines.txt)\" -eq 3 ] || echo \"FAIL: lines.txt has no 3 lines\"")
UTS = ("%expect stdout /^uts:/\n%%unshare -u\n### BEGIN SOLUTION\necho \"uts: $(readlink /proc/self/ns/uts)\"\n"
       "### END SOLUTION")


def notebook(path: Path, tasks: dict[str, str]) -> Path:
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.metadata.workshop = {"target": "local"}
    nb.cells = [markdown("# Lab", id="intro"), code("%expect exit 0\nmkdir -p work && echo ready", id="setup")]
    nb.cells += [code(source, id=name, metadata={"workshop": {"name": name}}) for name, source in tasks.items()]
    nbformat.write(nb, str(path))
    return path


def workshop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "WORKSHOP_TARGET")}
    env["COLUMNS"] = "200"  # the table's rows stay on one line each
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One probe of a notebook with a weak task (greet), a strong one (box) and one with a line nothing needs."""
    tmp = tmp_path_factory.mktemp("probe")
    source = notebook(tmp / "lab.ipynb", {"greet": GREET, "box": BOX, "count": COUNT})
    run = workshop("probe", str(source), *LOCAL, "--json", str(tmp / "probe.json"))
    return run, json.loads((tmp / "probe.json").read_text()) if (tmp / "probe.json").exists() else None


def rows(stdout: str) -> list[list[str]]:
    """The table's rows: their cells, stripped."""
    return [[cell.strip() for cell in line.strip("│ ").split("│")] for line in stdout.splitlines()
            if line.startswith("│")]


def test_printing_the_recorded_output_passes_a_check_that_only_greps_printed_text(lab):
    run, _ = lab
    assert run.returncode == 1, run.stderr
    assert ["greet", "greet:stdout /hello/", "1", "printf of the recorded output"] in rows(run.stdout)
    assert "greet: full marks for printf of the recorded output" in run.stdout


def test_a_line_the_checks_do_not_need_is_named(lab):
    run, _ = lab
    assert ["count", "count:three-lines", "1", "line 3 removed: sort lines.txt > sorted.txt"] in rows(run.stdout)


def test_a_task_whose_checks_read_what_the_step_left_is_not_named(lab):
    run, found = lab
    assert all(row[0] != "box" for row in rows(run.stdout)), run.stdout
    box = next(task for task in found[0]["tasks"] if task["task"] == "box")
    assert set(box["checks"]) == {"box:note-says-hello", "box:box-is-a-directory"}  # the hidden check too
    tried = {s["shortcut"]: s["earned"] for s in box["shortcuts"]}
    assert tried == {"empty answer": 0, "line 2 removed: mkdir -p box": 0,
                     "line 3 removed: echo hello | tee box/note": 1,  # the hidden check still passes: not full marks
                     "printf of the recorded output": 0}
    assert box["full_marks"] == []


def test_the_json_lists_every_weak_check_with_its_shortcut(lab):
    _, found = lab
    assert [(w["task"], w["check"], w["kind"], w["line"]) for w in found[0]["weak"]] == [
        ("greet", "greet:stdout /hello/", "printf", None), ("count", "count:three-lines", "lines", 3)]
    count = next(task for task in found[0]["tasks"] if task["task"] == "count")
    assert count["skipped"] == ["printf: the reference's run of the cell printed nothing"]


def test_only_the_tasks_asked_for_and_no_weak_check_exits_zero(tmp_path):
    source = notebook(tmp_path / "lab.ipynb", {"greet": GREET, "box": BOX})
    run = workshop("probe", str(source), *LOCAL, "--task", "box", "--json", "-")
    assert run.returncode == 0, run.stderr
    assert "no shortcut passed a check of its 1 probed tasks" in run.stderr
    found = json.loads(run.stdout)
    assert [task["task"] for task in found[0]["tasks"]] == ["box"] and found[0]["weak"] == []


def test_the_host_shortcut_drops_the_container_magic_and_is_tried_only_when_named(tmp_path):
    source = notebook(tmp_path / "lab.ipynb", {"uts": UTS})
    run = workshop("probe", str(source), *LOCAL, "--shortcut", "host")
    # the magic line is outside the solution region: dropping it is an edit the grader flags
    # (edited-outside-solution), so the host shortcut earns nothing and the check is not weak
    assert run.returncode == 0, run.stderr
    assert "uts: on the host: %%unshare -u dropped → 0 of 1 points" in run.stderr
    default = workshop("probe", str(source), *LOCAL, "--shortcut", "empty")
    assert default.returncode == 0, default.stderr
    plain = workshop("probe", str(source), *LOCAL, "--json", "-")
    task = json.loads(plain.stdout)[0]["tasks"][0]
    assert "host" not in {s["kind"] for s in task["shortcuts"]}
    assert task["skipped"][0].startswith("host: not tried by default on a target that is not a fresh VM")


def test_the_demo_notebook_with_a_task_shows_that_its_check_never_looks_at_stderr(tmp_path):
    text = (ROOT / "notebooks" / "00-demo.ipynb").read_text()
    assert "/tmp/workshop-demo" in text
    work = tmp_path / "workshop-demo"  # not the demo's own /tmp/workshop-demo, which other runs of it share
    nb = json.loads(text.replace("/tmp/workshop-demo", str(work)))
    task = next(cell for cell in nb["cells"] if cell.get("id") == "demo-05")
    task["metadata"]["workshop"] = {"task": True, "name": "note"}
    (tmp_path / "demo.ipynb").write_text(json.dumps(nb))
    run = workshop("probe", str(tmp_path / "demo.ipynb"), *LOCAL, "--json", "-")
    assert run.returncode == 1, run.stderr
    found = json.loads(run.stdout)[0]
    assert [(w["check"], w["shortcut"]) for w in found["weak"]] == [
        ("note:note-written", 'line 2 removed: echo "this goes to stderr" >&2')]
    assert not work.exists()  # the notebook's own clean-up ran after every shortcut


def test_a_notebook_without_tasks_is_refused_in_one_sentence():
    run = workshop("probe", str(ROOT / "notebooks" / "00-demo.ipynb"), *LOCAL)
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: " + str(ROOT / "notebooks" / "00-demo.ipynb") + ": cannot be probed: no "
                                  "cell is a task: mark the students' work with ### BEGIN SOLUTION and ### END "
                                  "SOLUTION (or <!-- BEGIN SOLUTION --> in Markdown, or metadata.workshop.task)")


@pytest.mark.parametrize("args, says", [
    ((), "error: the probe needs --target, where the shortcut answers run"),
    (("--target", "local"), "error: --target local runs the shortcut answers"),
    (("--target", "nowhere:x"), "error: --target nowhere:x: "),
    ((*LOCAL, "--task", "nope"), "no task is named nope (its code tasks: greet)"),
    ((*LOCAL, "--jobs", "2"), "error: --jobs 2 runs shortcut answers side by side, and on local they would share"),
])
def test_bad_input_gets_one_sentence(tmp_path, args, says):
    source = notebook(tmp_path / "lab.ipynb", {"greet": GREET})
    run = workshop("probe", str(source), *args)
    assert run.returncode == 2
    assert says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr


def test_a_missing_source_is_named():
    run = workshop("probe", "/nonexistent/lab.ipynb", *LOCAL)
    assert run.returncode == 2 and "/nonexistent/lab.ipynb" in run.stderr and "Traceback" not in run.stderr


def test_lines_of_a_python_file_become_pass_and_printf_does_not_apply():
    source = ("%%file step.py\ndef f():\n    ### BEGIN SOLUTION\n    x = 1\n    return x\n    ### END SOLUTION\n"
              "%%check --name runs\npython3 step.py")
    made, skipped = shortcuts(source, ["empty", "lines", "printf"], ("", "", 0))
    assert [s.label for s in made] == ["empty answer", "line 4 removed: x = 1", "line 5 removed: return x"]
    assert made[1].source.split("\n")[3] == "    pass"
    assert skipped == ["printf: the answer is the text of a file (%%file), not commands that print"]


@pytest.mark.parametrize("with_cleanup", [True, False], ids=["clean-up-cell", "none"])
def test_a_run_on_a_shared_machine_stops_after_its_task_and_then_runs_the_clean_up(tmp_path, with_cleanup):
    """The cells between the task and the clean-up never run for a shortcut; without a
    clean-up cell every run goes through the whole notebook, since only its later cells
    can undo what a run made."""
    log = tmp_path / "ran.log"
    source = notebook(tmp_path / "lab.ipynb", {"box": BOX})
    nb = nbformat.read(str(source), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"echo later >> {log}", id="later"))
    if with_cleanup:
        nb.cells.append(nbformat.v4.new_code_cell(f"%expect exit 0\n%cleanup\necho cleanup >> {log}", id="lab-cleanup"))
    nbformat.write(nb, str(source))
    run = workshop("probe", str(source), *LOCAL, "--json", str(tmp_path / "probe.json"))
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "probe.json").read_text())[0]
    shortcuts = len(report["tasks"][0]["shortcuts"])
    assert shortcuts >= 3, report  # the empty answer, and each of the solution's two lines removed
    ran = log.read_text().split()
    if with_cleanup:  # the reference's run goes through every cell; each shortcut's skips "later"
        assert ran.count("later") == 1 and ran.count("cleanup") == 1 + shortcuts, ran
    else:
        assert ran.count("later") == 1 + shortcuts, ran
    # and the task's checks still judge every shortcut: the empty answer earns nothing
    empty = next(s for s in report["tasks"][0]["shortcuts"] if s["kind"] == "empty")
    assert empty["earned"] == 0, empty
