"""The instructor's whole loop with real kernels: assign, students run their copies,
grade from records and with --rerun, feedback pages, Canvas and Moodle files, and
the student's own `workshop check`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from assignment_lab import (
    BOX_SOLUTION,
    COUNT_SOLUTION,
    HIDDEN_POINTS,
    HIDDEN_TEXT,
    VISIBLE_POINTS,
    fill,
    make_source,
)
from harness import KernelHarness, clean_env

from workshop.assign import release
from workshop.batch import grade
from workshop.feedback import WITHHELD, Redactor
from workshop.grading import load_reference
from workshop.runner import run_notebook

pytestmark = pytest.mark.slow

MAX = VISIBLE_POINTS + HIDDEN_POINTS
ATTACK = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"
# Canvas's "Download Submissions" names: student, [LATE,] user id, submission id, file
FILES = {"good": "goodstudent_1001_9001_lab", "lazy": "lazystudent_LATE_1002_9002_lab",
         "edited": "editedcheck_1003_9003_lab", "attacker": "=1+1<img src=x onerror=alert(9)>_1004_9004_lab"}


def workshop(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**clean_env(), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def course(tmp_path_factory, installed_kernelspec):
    """An assignment released (verified by a real run), and four students' notebooks run by the kernel."""
    d = tmp_path_factory.mktemp("course")
    release([make_source(d / "lab.ipynb")], d / "out")
    student, reference = d / "out" / "student" / "lab.ipynb", d / "out" / "reference" / "lab.ipynb"
    filled, subs = d / "filled", d / "subs"
    filled.mkdir()
    good = {"box": BOX_SOLUTION, "count": COUNT_SOLUTION, "why": "It shares the PIDs."}
    notebooks = {
        "good": fill(student, filled / f"{FILES['good']}.ipynb", good),
        "lazy": fill(student, filled / f"{FILES['lazy']}.ipynb", {}),
        "edited": fill(student, filled / f"{FILES['edited']}.ipynb", {"box": "mkdir -p wrong", "count": COUNT_SOLUTION},
                       {"box": ('[ -d box ] || echo "FAIL: there is no directory box"', "true")}),
        "attacker": fill(student, filled / f"{FILES['attacker']}.ipynb",
                         {"box": f"echo '{ATTACK}'\n" + BOX_SOLUTION, "count": COUNT_SOLUTION, "why": ATTACK},
                         # a check of its own claiming a hidden check's name: the rerun puts the real one back
                         {"count": ("%%check --name three-lines", "%%check --hidden --name middle-line\ntrue\n"
                                                                    "%%check --name three-lines")}),
    }
    for path in notebooks.values():
        result = run_notebook(path, out_dir=subs, allow_errors=True)
        assert result.error is None, result.error
    return {"dir": d, "student": student, "reference": reference, "subs": subs,
            "sub": {name: subs / f"{stem}.ipynb" for name, stem in FILES.items()}}


def _by_student(report) -> dict[str, dict]:
    names = {stem: name for name, stem in FILES.items()}
    return {names[r["student"]]: r for r in report.results}


# ---- the student's side ------------------------------------------------------------------
def test_task_cells_show_task_and_points_in_their_record(course):
    nb = json.loads(course["sub"]["good"].read_text())
    records = {c["id"]: o["data"] for c in nb["cells"] for o in c.get("outputs", [])
               if "application/vnd.workshop.record+json" in o.get("data", {})}
    box = records["box"]["application/vnd.workshop.record+json"]
    assert box["task"] == {"points": 6.0} and box["cell_id"] == "box"
    # 3 of the 6 points come from a hidden check the student's copy does not hold
    assert "".join(records["box"]["text/plain"]).startswith("✔ task · 6 points, 3 by hidden checks · 2 checks")
    assert "task · 6 points" in "".join(records["box"]["text/html"])
    assert "task" not in records["setup"]["application/vnd.workshop.record+json"]


def test_a_jupyterlab_cell_id_finds_the_task_in_the_saved_notebook(course, installed_kernelspec):
    """JupyterLab sends only the cell's id; the kernel reads the task from the notebook the server names."""
    kernel = KernelHarness(clean_env(JPY_SESSION_NAME=str(course["student"])))
    try:
        send = kernel.kc.session.msg

        def msg(msg_type, content=None, parent=None, header=None, metadata=None):
            if msg_type == "execute_request":
                metadata = {"cellId": "count", "deletedCells": [], "recordTiming": False}
            return send(msg_type, content, parent, header, metadata)

        kernel.kc.session.msg = msg
        record = kernel.run("echo 3").record
    finally:
        kernel.shutdown()
    assert record["task"] == {"points": 4.0} and record["cell_id"] == "count"


def test_workshop_check_gives_the_visible_score_before_hand_in(course):
    good = workshop("check", str(course["sub"]["good"]))
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"Visible checks: {VISIBLE_POINTS} of {VISIBLE_POINTS} points." in " ".join(good.stdout.split())
    assert f"{HIDDEN_POINTS} points of hidden checks" in " ".join(good.stdout.split())
    lazy = workshop("check", str(course["sub"]["lazy"]))
    assert lazy.returncode == 1 and "Visible checks: 2 of 6 points." in " ".join(lazy.stdout.split())
    fresh = workshop("check", str(course["student"]))  # not run yet
    assert fresh.returncode == 1 and "record-missing" in fresh.stdout


# ---- grading -----------------------------------------------------------------------------
def test_grading_from_records_leaves_hidden_checks_to_a_rerun(course):
    results = _by_student(grade(course["reference"], [course["subs"]]))
    hidden = ["box:note-says-hello", "cell 4:middle-line"]
    for result in results.values():
        assert [result["checks"][k]["status"] for k in hidden] == ["needs-rerun", "needs-rerun"]
        assert "--rerun" in result["checks"][hidden[0]]["message"]
    assert results["good"]["total"] == VISIBLE_POINTS and results["good"]["flags"] == []
    assert results["lazy"]["total"] == 2
    assert results["edited"]["checks"]["box:box-exists"]["status"] == "invalid"
    assert [f["kind"] for f in results["edited"]["flags"]] == ["check-edited"]
    assert results["attacker"]["total"] == VISIBLE_POINTS  # its own "hidden" check counts for nothing
    assert results["good"]["answers"]["box"] == BOX_SOLUTION


def test_grade_command_says_what_was_not_judged(course, tmp_path):
    done = workshop("grade", str(course["reference"]), str(course["subs"]), "--csv", str(tmp_path / "g.csv"))
    assert done.returncode == 0, done.stderr
    assert f"2 hidden checks ({HIDDEN_POINTS} points) not judged" in " ".join(done.stdout.split())
    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "g.csv").open(newline=""))}
    good = rows[FILES["good"]]
    assert good["box:note-says-hello"] == "" and good["box:box-exists"] == "2" and good["total"] == "6"


def test_a_rerun_puts_the_checks_back_and_scores_the_hidden_ones(course):
    report = grade(course["reference"], [course["subs"]], rerun=True, target="local", jobs=2,
                   run_student_code_on_this_machine=True)
    results = _by_student(report)
    assert results["good"]["total"] == MAX, results["good"]["checks"]
    assert results["lazy"]["total"] == 2
    edited = results["edited"]["checks"]
    assert edited["box:box-exists"]["status"] == "failed"  # the real check ran again
    assert edited["box:note-says-hello"]["status"] == "failed"
    assert results["edited"]["answers"]["box"] == "mkdir -p wrong"  # the student's code, not the restored cell
    attacker = results["attacker"]["checks"]
    assert attacker["cell 4:middle-line"]["status"] == "passed"  # the real hidden cell, run after its code
    assert all(r["checks"][k]["status"] != "needs-rerun" for r in results.values() for k in r["checks"])


class Page(HTMLParser):
    """What a feedback page is made of: its tags, attributes and text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.meta: dict[str, str] = {}
        self.style = ""
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        self._in_style = tag == "style"
        found = dict(attrs)
        if tag == "meta" and "http-equiv" in found:
            self.meta[found["http-equiv"].lower()] = found.get("content") or ""

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)


def test_feedback_pages_and_lms_files(course, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("id,name,email,section\n1001,Good Student,good@uni.edu,A\n1002,Lazy Student,lazy@uni.edu,A\n"
                      "1003,Edited Check,edited@uni.edu,B\n1004,=HYPERLINK(\"x\"),evil@uni.edu,B\n", encoding="utf-8")
    pages, canvas, moodle = tmp_path / "feedback", tmp_path / "canvas.csv", tmp_path / "moodle.csv"
    done = workshop("grade", str(course["reference"]), str(course["subs"]), "--rerun", "--target", "local",
                    "--run-student-code-on-this-machine", "--feedback", str(pages), "--lms", "canvas", str(canvas),
                    "--lms", "moodle", str(moodle), "--roster", str(roster), "--assignment", "Lab 1 (4711)", "-q")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in pages.iterdir()) == ["1001.html", "1002.html", "1003.html", "1004.html"]
    for path in pages.iterdir():
        _check_page(path.read_text(encoding="utf-8"))
    good = Page((pages / "1001.html").read_text())
    assert "Good Student" in good.text and f"{MAX:g}" in good.text
    attacker = Page((pages / "1004.html").read_text())
    assert any(ATTACK in t for t in attacker.text)  # shown as text, never as markup

    rows = list(csv.reader(canvas.open(newline="", encoding="utf-8")))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 1 (4711)"]
    assert rows[1] == ["Points Possible", "", "", "", "", f"{MAX:g}"]
    by_id = {row[1]: row for row in rows[2:]}
    assert by_id["1001"] == ["Good Student", "1001", "", "", "A", f"{MAX:g}"]
    assert by_id["1002"][5] == "2" and by_id["1004"][0] == "'=HYPERLINK(\"x\")"
    rows = list(csv.reader(moodle.open(newline="", encoding="utf-8")))
    assert rows[0] == ["Email address", "Lab 1 (4711)"]
    assert dict(rows[1:]) == {"good@uni.edu": f"{MAX:g}", "lazy@uni.edu": "2", "edited@uni.edu": "6",
                              "evil@uni.edu": f"{MAX:g}"}


def _check_page(text: str) -> None:
    import base64
    import hashlib

    page = Page(text)
    for secret in HIDDEN_TEXT:
        assert secret not in text, secret
    assert not {"script", "img", "link", "iframe", "object", "embed", "form", "base"} & set(page.tags)
    assert not [v for k, v in page.attrs if k in ("src", "href", "action") and not (v or "").startswith("#")]
    assert not [k for k, _ in page.attrs if k.startswith("on") or k == "style"]
    csp = page.meta["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    digest = base64.b64encode(hashlib.sha256(page.style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp  # only the page's own stylesheet applies
    words = " ".join(page.text)
    for task in ("box", "count", "why"):
        assert task in page.text, task
    assert "hidden check 1" in words and "hidden check 2" in words


def test_canvas_names_from_file_names_without_a_roster(course, tmp_path):
    canvas = tmp_path / "canvas.csv"
    done = workshop("grade", str(course["reference"]), str(course["sub"]["good"]), str(course["sub"]["lazy"]),
                    "--rerun", "--target", "local", "--run-student-code-on-this-machine", "--lms", "canvas",
                    str(canvas), "-q")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(canvas.open(newline="")))
    assert rows[2:] == [["goodstudent", "1001", "", "", "", f"{MAX:g}"], ["lazystudent", "1002", "", "", "", "2"]]


def test_lms_and_roster_problems_are_refused_before_anything_runs(course, tmp_path):
    canvas = tmp_path / "canvas.csv"
    done = workshop("grade", str(course["reference"]), str(course["subs"]), "--lms", "canvas", str(canvas))
    assert done.returncode == 2 and "hidden checks, which only --rerun scores" in " ".join(done.stderr.split())
    roster = tmp_path / "roster.csv"
    roster.write_text("id,name\n1001,Good Student\n", encoding="utf-8")
    done = workshop("grade", str(course["reference"]), str(course["subs"]), "--rerun", "--target", "local",
                    "--run-student-code-on-this-machine", "--lms", "moodle", str(canvas), "--roster", str(roster))
    assert done.returncode == 2 and "matches no id or email of the roster" in " ".join(done.stderr.split())
    roster.write_text("name\nsomeone\n", encoding="utf-8")
    done = workshop("grade", str(course["reference"]), str(course["subs"]), "--feedback", str(tmp_path / "fb"),
                    "--roster", str(roster))
    assert done.returncode == 2 and "must name the columns id and name" in " ".join(done.stderr.split())
    assert not canvas.exists() and not (tmp_path / "fb").exists()


def test_text_that_quotes_a_hidden_check_is_withheld(course):
    redact = Redactor(load_reference(course["reference"]))
    assert redact("the check 'note-says-hello' is not in the cell's record") == \
        "the check a hidden check is not in the cell's record"
    assert redact('got: [ "$(cat box/note 2>/dev/null)" = hello ] || echo') == WITHHELD
    assert redact("grep -qx b lines.txt || echo x") == WITHHELD
    assert redact("lines.txt has no 3 lines") == "lines.txt has no 3 lines"


@pytest.mark.browser
def test_a_feedback_page_reads_on_a_phone_and_runs_nothing(course, tmp_path):
    import shutil

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is missing: apt-get install chromium (scripts/setup --test installs it)")
    from playwright.sync_api import sync_playwright

    pages = tmp_path / "feedback"
    done = workshop("grade", str(course["reference"]), str(course["subs"]), "--feedback", str(pages), "-q")
    assert done.returncode == 0, done.stderr
    attacker = next(p for p in pages.iterdir() if p.name.startswith("1_1_img"))
    bare = tmp_path / "bare.html"  # the escaping must hold without the Content-Security-Policy too
    bare.write_text(attacker.read_text().replace("Content-Security-Policy", "X-Removed"))
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            for path in (attacker, bare):
                page = browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True)
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                seen = page.evaluate("""() => ({
                    width: document.documentElement.scrollWidth,
                    active: document.querySelectorAll('script, iframe, object, embed, svg, img').length,
                    styled: getComputedStyle(document.querySelector('section')).borderTopStyle,
                    text: document.body.innerText,
                })""")
                assert dialogs == [] and seen["active"] == 0, seen
                assert seen["width"] <= 360, f"the page is {seen['width']} px wide on a 360 px screen"
                assert seen["styled"] == "solid"  # its own stylesheet applies, under the CSP as without it
                assert ATTACK in seen["text"] and "hidden check 2" in seen["text"]
                page.close()
        finally:
            browser.close()


def test_a_page_for_a_notebook_that_cannot_be_read(course, tmp_path):
    from workshop.feedback import feedback_html

    broken = tmp_path / "broken.ipynb"
    broken.write_text("{", encoding="utf-8")
    report = grade(course["reference"], [broken])
    page = Page(feedback_html(report, report.results[0], "lab"))
    words = " ".join(" ".join(page.text).split())
    assert "not a readable notebook" in words and "The notebook could not be read (see above)." in words
    assert page.text.count("0") >= 1 and f"{MAX:g}" in " ".join(page.text)
