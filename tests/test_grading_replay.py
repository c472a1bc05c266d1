"""A copy of another student's executed notebook: the grader sees the whole
class, so both submissions are flagged, each naming the other; the flags reach
the grade-book files and the logs, and no student's page names another."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
from harness import clean_env
from test_grading import make_notebook

from workshop.batch import grade

RECORD = "application/vnd.workshop.record+json"
SOURCES = {"hello": "%expect stdout /^hello/\necho hello", "bye": "%expect exit 0\necho bye"}


@pytest.fixture(scope="module")
def klass(tmp_path_factory, installed_kernelspec):
    """alice and bob ran the notebook themselves; carol handed in alice's file, erin
    alice's file with the records' durations changed (same session, other records)."""
    d = tmp_path_factory.mktemp("replay")
    ref = make_notebook(d / "reference.ipynb", SOURCES)
    subs = d / "subs"
    for name in ("alice", "bob"):
        subprocess.run([sys.executable, "-m", "workshop", "run", str(ref), "--out", str(d / name)],
                       capture_output=True, timeout=120, env=clean_env(), check=True)
    subs.mkdir()
    for name in ("alice", "bob"):
        shutil.copy(d / name / "reference.ipynb", subs / f"{name}.ipynb")
    shutil.copy(subs / "alice.ipynb", subs / "carol.ipynb")
    nb = json.loads((subs / "alice.ipynb").read_text())
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if RECORD in output.get("data", {}):
                output["data"][RECORD]["duration"] += 0.5
    (subs / "erin.ipynb").write_text(json.dumps(nb))
    return ref, subs


def flags(result: dict) -> dict[str, str]:
    return {f["kind"]: f["message"] for f in result["flags"]}


def check_class(results: dict[str, dict]) -> None:
    assert flags(results["bob"]) == {}
    alice, carol, erin = flags(results["alice"]), flags(results["carol"]), flags(results["erin"])
    assert set(alice) == set(carol) == {"replay", "shared-session"}
    assert "carol" in alice["replay"] and "alice" in carol["replay"]
    assert "bob" not in alice["replay"] + alice["shared-session"]
    assert "erin" in alice["shared-session"] and "erin" in carol["shared-session"]
    assert set(erin) == {"shared-session"}
    assert "alice" in erin["shared-session"] and "carol" in erin["shared-session"]
    # a flag for the instructor: the points stay what the notebook earns
    assert all(r["total"] == r["max"] for r in results.values())


def test_copies_of_an_executed_notebook_are_flagged_both_ways(klass):
    ref, subs = klass
    results = {r["student"]: r for r in grade(ref, [subs]).results}
    check_class(results)


def test_copies_are_flagged_in_a_parallel_grade_and_on_the_terminal(klass, tmp_path):
    ref, subs = klass
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--jobs", "2",
                           "--json", str(tmp_path / "g.json")], capture_output=True, text=True, timeout=120,
                          env=clean_env(COLUMNS="250"))
    assert done.returncode == 0, done.stderr
    check_class({r["student"]: r for r in json.loads((tmp_path / "g.json").read_text())["submissions"]})
    assert "replay" in done.stdout and "shared-session" in done.stdout


def test_copies_are_flagged_in_a_rerun_too(klass):
    """A rerun makes fresh records; the evidence of a copy is the student's own file."""
    ref, subs = klass
    report = grade(ref, [subs / "alice.ipynb", subs / "carol.ipynb", subs / "bob.ipynb"], rerun=True,
                   target="local", run_student_code_on_this_machine=True, jobs=3, timeout=30)
    results = {r["student"]: r for r in report.results}
    assert "carol" in flags(results["alice"])["replay"] and "alice" in flags(results["carol"])["replay"]
    assert flags(results["bob"]) == {}


# ---- flags on the way to the grade book, and to the students --------------------------------
# Canvas's "Download Submissions" names: name, user id, submission id, file
CANVAS = {"alice": "alice_1001_9001_lab", "bob": "bob_1002_9002_lab", "carol": "carol_1003_9003_lab",
          "erin": "erin_1005_9005_lab", "formula": "=1+1_1006_9006_lab"}
IDS = {"alice": "1001", "bob": "1002", "carol": "1003", "erin": "1005", "formula": "1006"}


def grade_cli(*args, **env) -> subprocess.CompletedProcess:
    """`workshop grade` as cron or CI runs it: stdout and stderr are pipes, not a terminal, 80 columns."""
    return subprocess.run([sys.executable, "-m", "workshop", "grade", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=clean_env(**env))


@pytest.fixture(scope="module")
def canvas_class(klass, tmp_path_factory):
    """The class as Canvas hands it out; one more copy of alice's file, by a student named like a formula."""
    ref, subs = klass
    d = tmp_path_factory.mktemp("canvas")
    for name, stem in CANVAS.items():
        shutil.copy(subs / f"{'alice' if name == 'formula' else name}.ipynb", d / f"{stem}.ipynb")
    return ref, d


def test_lms_files_carry_the_flags_beside_them_and_say_so_off_a_terminal(canvas_class, tmp_path):
    ref, subs = canvas_class
    canvas, moodle = tmp_path / "canvas.csv", tmp_path / "moodle.csv"
    done = grade_cli(ref, subs, "--lms", "canvas", canvas, "--lms", "moodle", moodle)
    assert done.returncode == 0, done.stderr
    grades = {row[1]: row for row in csv.reader(canvas.open(newline=""))}
    assert grades["1003"][5] == "2"  # the copier's total is what the notebook earned...
    flags = list(csv.DictReader((tmp_path / "canvas-flags.csv").open(newline="")))
    by_id = {}
    for row in flags:  # ...and its flags sit beside it, a row per flag
        by_id.setdefault(row["ID"], []).append(row)
    assert set(by_id) == {"1001", "1003", "1005", "1006"}  # bob ran his own notebook
    carol = {row["kind"]: row for row in by_id["1003"]}
    assert set(carol) == {"replay", "shared-session"} and len(by_id["1003"]) == 2
    assert carol["replay"]["student"] == "carol" and carol["replay"]["submission"] == CANVAS["carol"]
    assert "alice_1001_9001_lab" in carol["replay"]["message"]  # the instructor's file names the original
    assert [row["kind"] for row in by_id["1005"]] == ["shared-session"]
    formula = by_id["1006"][0]
    assert formula["student"] == "'=1+1" and formula["submission"] == "'" + CANVAS["formula"]
    moodle_flags = list(csv.reader((tmp_path / "moodle-flags.csv").open(newline="")))
    assert moodle_flags[0] == ["student", "ID number", "submission", "kind", "cell", "message"]
    assert len(moodle_flags) == len(flags) + 1
    lines = done.stderr.splitlines()  # one line per import, however narrow a log is
    for kind, path in (("canvas", tmp_path / "canvas-flags.csv"), ("moodle", tmp_path / "moodle-flags.csv")):
        line = next(line for line in lines if line.startswith("4 of 5 students flagged") and f"the {kind} " in line)
        assert line.endswith(str(path)) and "(replay, shared-session)" in line


def test_a_grade_off_a_terminal_prints_every_grade_and_flag_on_a_line(canvas_class):
    ref, subs = canvas_class
    done = grade_cli(ref, subs)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert not any(c in done.stdout for c in "│┃━\x1b")  # nothing drawn, no colour codes
    carol = next(i for i, line in enumerate(lines) if line.startswith(CANVAS["carol"]))
    assert lines[carol].split() == [CANVAS["carol"], "2/2", "2/2", "-", "replay,", "shared-session"]
    details = lines[carol + 1:carol + 3]
    assert any(d.startswith("    replay: has records identical to those of ") and CANVAS["alice"] in d
               for d in details), details
    bob = next(line for line in lines if line.startswith(CANVAS["bob"]))
    assert bob.split() == [CANVAS["bob"], "2/2", "2/2", "-", "-"]
    assert "Graded from the saved records, not from a run." in done.stdout


def test_a_class_without_flags_gets_an_empty_flags_file_not_a_stale_one(canvas_class, tmp_path):
    ref, subs = canvas_class
    canvas, flags = tmp_path / "canvas.csv", tmp_path / "canvas-flags.csv"
    flags.write_text("student,ID\nsomeone,1\n")  # left by last week's grading
    done = grade_cli(ref, subs / f"{CANVAS['bob']}.ipynb", "--lms", "canvas", canvas, "-q")
    assert done.returncode == 0, done.stderr
    assert list(csv.reader(flags.open(newline=""))) == [["student", "ID", "submission", "kind", "cell", "message"]]
    assert f"no student is flagged: {flags} lists no flag" in done.stderr
    assert done.stdout == ""  # -q: no table


def test_bad_lms_arguments_are_refused_in_one_sentence(canvas_class, tmp_path):
    ref, subs = canvas_class
    done = grade_cli(ref, subs, "--lms", "blackboard", tmp_path / "b.csv")
    assert done.returncode == 2 and "'blackboard' is not one of 'canvas', 'moodle'" in done.stderr
    done = grade_cli(ref, subs, "--lms", "moodle", tmp_path / "a.csv", "--lms", "moodle", tmp_path / "b.csv")
    assert done.returncode == 2 and "--lms moodle is given twice: give each kind once" in done.stderr
    done = grade_cli(ref, subs, "--lms", "canvas", tmp_path / "g.csv", "--csv", tmp_path / "g-flags.csv")
    assert done.returncode == 2 and "which is also the output" in " ".join(done.stderr.split())
    assert not list(tmp_path.iterdir())
    assert "canvas|moodle FILE" in grade_cli("--help").stdout


def test_a_copiers_feedback_page_names_no_other_student(canvas_class, tmp_path):
    """Graded for real: the pages of copied notebooks say what was found, never who else handed it in."""
    from html.parser import HTMLParser

    ref, subs = canvas_class
    pages = tmp_path / "feedback"
    done = grade_cli(ref, subs, "--feedback", pages, "--lms", "canvas", tmp_path / "canvas.csv", "-q")
    assert done.returncode == 0, done.stderr

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts: list[str] = []

        def handle_data(self, data):
            self.parts.append(data)

    texts = {}
    for name, student_id in IDS.items():
        parser = Text()
        parser.feed((pages / f"{student_id}.html").read_text(encoding="utf-8"))
        texts[name] = " ".join("".join(parser.parts).split())
    for name, text in texts.items():
        for other in IDS:
            if other != name:
                for word in (other if other != "formula" else "=1+1", IDS[other], CANVAS[other]):
                    assert word not in text, (name, word, text)
    assert "replay: has records identical to those of 2 other submissions: copies of one executed notebook" \
        in texts["carol"]
    assert "shared-session: ran in the same kernel session as 3 other submissions" in texts["erin"]
    assert "carol" in texts["carol"] and "replay" not in texts["bob"]


def test_any_flag_text_that_names_another_student_is_unnamed_on_the_page(canvas_class):
    """A flag made without a text for the student (a future kind, say) still names no one on the page."""
    from workshop.feedback import feedback_html

    ref, subs = canvas_class
    report = grade(ref, [subs])
    carol = next(r for r in report.results if r["student"] == CANVAS["carol"])
    carol["flags"].append({"kind": "similar", "cell": None,
                           "message": f"92 % like {CANVAS['alice']} (alice, 1001); cell 2 differs"})
    page = feedback_html(report, carol, "lab", others=[CANVAS["alice"], "alice", "1001"])
    assert "92 % like another submission (another submission, another submission); cell 2 differs" in page
    assert "alice" not in page and "1001" not in page
