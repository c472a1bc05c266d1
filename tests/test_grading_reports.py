"""Reports with student-controlled text in them: file names (student names) and
messages and output from notebooks.  A spreadsheet must not run a formula, the
terminal must not take markup or escape sequences, a browser must not run a
script; and every report says what its grades prove."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from harness import clean_env
from test_grading import make_notebook

from workshop.batch import grade
from workshop.reports import csv_text, print_table, terminal_text, to_csv, to_html

RECORD = "application/vnd.workshop.record+json"
SOURCES = {
    "hello": "%expect stdout /^hello/\necho hello",
    "made": "touch made\n%%check --name made\ntest -f made || echo 'FAIL: made is missing'",
    "loud": "%expect stdout /^quiet/\necho '</pre><script>window.__pwned=\"stdout\"</script><b onmouseover=x>'",
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, installed_kernelspec):
    d = tmp_path_factory.mktemp("reports")
    ref = make_notebook(d / "ref.ipynb", SOURCES | {"setup": 'cd "$(mktemp -d)"'})
    subprocess.run([sys.executable, "-m", "workshop", "run", "--keep-going", str(ref), "--out", str(d / "out")],
                   capture_output=True, timeout=120, env=clean_env())
    return ref, json.loads((d / "out" / "ref.ipynb").read_text())


def with_check_message(nb: dict, message: str) -> dict:
    """The notebook with its %%check result rewritten in the record: failed, with ``message``."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            for check in output.get("data", {}).get(RECORD, {}).get("checks", []):
                if check.get("kind") != "expect":
                    check.update(passed=False, message=message, output=message)
    return nb


# ---- CSV ---------------------------------------------------------------------------------
FORMULAS = ["=1+1", "+SUM(1)", "-2+3", "@SUM(A1)", "\tx", "\rx", "  =HYPERLINK(1)"]


def test_csv_fields_cannot_start_a_formula(executed, tmp_path):
    ref, nb = executed
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in [*FORMULAS, "alice"]:
        (subs / f"{name}.ipynb").write_text(json.dumps(nb))
    (subs / "=broken.ipynb").write_text("{")
    report = grade(ref, [subs])
    rows = list(csv.reader(io.StringIO(to_csv(report), newline="")))
    students = [row[0] for row in rows[1:]]
    assert sorted(students) == sorted(["'" + n for n in FORMULAS] + ["alice", "'=broken"])
    for row in rows:
        for field in row:
            assert not field.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert csv_text("-1") == "'-1" and csv_text("1.5") == "1.5" and csv_text("a=b") == "a=b"


# ---- the terminal ------------------------------------------------------------------------
HOSTILE_NAMES = ["[red]x", "[link=javascript:alert(1)]click", "[bold blink]loud", "esc\x1b[2Jclear",
                 "bell\x07", "rtl\u202eevil"]


def test_the_terminal_table_shows_student_text_as_text(executed, tmp_path):
    ref, nb = executed
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in HOSTILE_NAMES:
        (subs / f"{name}.ipynb").write_text(json.dumps(nb))
    (subs / "[red]broken.ipynb").write_text("{")
    for env in ({}, {"FORCE_COLOR": "1", "TERM": "xterm-256color"}):
        done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), str(subs)], capture_output=True,
                              text=True, timeout=60, env=clean_env(COLUMNS="300", **env))
        assert done.returncode == 0, done.stderr
        for literal in ("[red]x", "[link=javascript:alert(1)]click", "[bold blink]loud", "esc\ufffd[2Jclear",
                        "bell\ufffd", "rtl\ufffdevil"):
            assert literal in done.stdout, (literal, done.stdout)
        assert "\x1b]8;" not in done.stdout + done.stderr  # no hyperlink escape
        assert "\x1b[2J" not in done.stdout + done.stderr and "\x07" not in done.stdout + done.stderr
        assert "[red]broken.ipynb" in done.stderr  # the unreadable file's error line


def test_print_table_in_process_records_literal_text(executed, tmp_path):
    from rich.console import Console

    ref, nb = executed
    (tmp_path / "[red]x.ipynb").write_text(json.dumps(nb))
    console = Console(record=True, width=200, force_terminal=True)
    print_table(grade(ref, [tmp_path]), console)
    assert "[red]x" in console.export_text()
    assert terminal_text("a\nb[i]") == "a b\\[i]"


# ---- HTML in a real browser -------------------------------------------------------------
PAYLOADS = [
    "<script>window.__pwned='message'</script>",
    "<img src=x onerror=\"window.__pwned='img'\">",
    "<a href=\"javascript:window.__pwned='link'\">click</a>",
    "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>",
    "<svg onload=\"alert('svg')\"></svg>",
    "\" onmouseover=\"alert(1)\" x=\"",
    "{{ 7*7 }} {% raw %}",
]
NAMES = ["<img src=x onerror=alert('name')>", "<svg onload=window.__pwned='name'>", "javascript:alert(1)",
         "\" autofocus onfocus=\"alert(2)"]


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is missing: apt-get install chromium (scripts/setup installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install playwright (the test extra installs it)")
    return path, sync_playwright


def open_in_browser(page_path: Path, screenshot: Path | None = None) -> dict:
    """Load a page in headless Chromium; what ran, what it shows."""
    executable, sync_playwright = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            for element in page.query_selector_all("details"):
                element.evaluate("e => e.open = true")  # show the failing output too
            page.mouse.move(600, 300)
            page.keyboard.press("Tab")
            page.wait_for_timeout(300)
            found = page.evaluate("""() => ({
                pwned: window.__pwned === undefined ? null : String(window.__pwned),
                active: document.querySelectorAll('script, iframe, object, embed, svg, img').length,
                handlers: [...document.querySelectorAll('*')].flatMap(
                    e => [...e.attributes].filter(a => a.name.startsWith('on')).map(a => a.name)),
                jsLinks: [...document.querySelectorAll('a')].filter(a => /^\\s*javascript:/i.test(a.href)).length,
                text: document.body.innerText,
            })""")
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    found["dialogs"] = dialogs
    return found


@pytest.mark.browser
def test_the_browser_runs_nothing_from_a_hostile_class(executed, tmp_path):
    ref, nb = executed
    subs = tmp_path / "subs"
    subs.mkdir()
    for i, payload in enumerate(PAYLOADS):
        (subs / f"student{i}.ipynb").write_text(json.dumps(with_check_message(nb, payload)))
    for name in NAMES:
        (subs / f"{name}.ipynb").write_text(json.dumps(nb))
    (subs / "<script>broken.ipynb").write_text("{")
    html_path = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--html", str(html_path),
                           "--quiet"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    page = html_path.read_text()

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags: set[str] = set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)

    tags = Tags()
    tags.feed(page)
    assert not tags.tags & {"script", "img", "svg", "iframe", "object", "embed"}, tags.tags
    # the Content-Security-Policy is a second wall; the escaping must hold without it
    bare = tmp_path / "bare.html"
    bare.write_text(page.replace("Content-Security-Policy", "X-Removed"))
    for path in (html_path, bare):
        seen = open_in_browser(path)
        assert seen["pwned"] is None and seen["dialogs"] == [], seen
        assert seen["active"] == 0 and seen["handlers"] == [] and seen["jsLinks"] == 0
        for text in [*PAYLOADS, *NAMES, "<script>broken.ipynb"]:
            assert text.replace("\n", " ") in seen["text"].replace("\n", " "), text
        assert "</pre><script>window.__pwned=\"stdout\"</script>" in seen["text"]


@pytest.mark.browser
def test_the_browser_check_itself_sees_a_script_run(tmp_path):
    """The detector works: an unescaped payload does run in this browser."""
    page = tmp_path / "raw.html"
    page.write_text(f"<!DOCTYPE html><html><body>{PAYLOADS[0]}{NAMES[0]}</body></html>")
    seen = open_in_browser(page)
    assert seen["pwned"] == "message" and seen["dialogs"] == ["name"]


@pytest.mark.browser
def test_a_normal_report_looks_right(executed, tmp_path):
    """A screenshot of an ordinary class's report, kept for a person to look at."""
    ref, nb = executed
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("alice", "bob"):
        (subs / f"{name}.ipynb").write_text(json.dumps(nb))
    (subs / "carol.ipynb").write_text(json.dumps(with_check_message(nb, "made is missing")))
    (subs / "dan.ipynb").write_text("{")
    html_path = tmp_path / "report.html"
    html_path.write_text(to_html(grade(ref, [subs])))
    shot = Path(os.environ.get("WORKSHOP_REPORT_SCREENSHOT", tmp_path / "report.png"))
    seen = open_in_browser(html_path, screenshot=shot)
    assert shot.stat().st_size > 10_000
    assert "Graded from the saved records, not from a run" in seen["text"]
    assert "Records are not signed" in seen["text"] and "--rerun --target qemu:NAME" in seen["text"]
    for name in ("alice", "bob", "carol", "dan"):
        assert name in seen["text"]


# ---- what the grades prove ------------------------------------------------------------------
def test_reports_say_what_a_grade_from_records_and_from_a_rerun_prove(executed, tmp_path):
    ref, nb = executed
    sub = tmp_path / "alice.ipynb"
    sub.write_text(json.dumps(nb))
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), str(sub)], capture_output=True,
                          text=True, timeout=60, env=clean_env(COLUMNS="200"))
    out = " ".join(done.stdout.split())
    assert "Graded from the saved records, not from a run." in out
    assert "Records are not signed" in out and "--rerun --target qemu:NAME" in out
    report = grade(ref, [sub], rerun=True, target="local", run_student_code_on_this_machine=True, timeout=30)
    page = to_html(report)
    assert "Graded from a fresh rerun of every submission" in page and "executed again on local" in page
    assert "no isolation from this machine" in page
    from rich.console import Console

    from workshop.reports import print_proof

    console = Console(record=True, width=300)
    print_proof(report, console)
    text = console.export_text()
    assert "fresh rerun" in text and "root on the target" in text
