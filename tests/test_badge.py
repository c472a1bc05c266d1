"""The badge under a cell says what happened in the fewest words, in text and HTML."""

from __future__ import annotations

import html
import re
import threading

import nbformat
from nbconvert import HTMLExporter

from workshop.records import RECORD_MIME, badge_html, badge_text


def _record(status: str = "ok", exit_status: int = 0, checks: tuple = (), **more) -> dict:
    return {"status": status, "exit_status": exit_status, "duration": 0.012, "target": {"kind": "local"},
            "checks": list(checks), **more}


def _check(name: str, passed: bool, message: str = "", kind: str = "expect") -> dict:
    return {"name": name, "passed": passed, "message": message, "kind": kind}


EXIT_0 = _check("exit 0", True)
GREETING = _check("greeting", False, "no greeting in out.txt", kind="check")


def _shown(html_text: str) -> str:
    """The HTML badge as a reader sees it: tags gone, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def test_a_plain_cell_says_its_exit_status_once():
    assert badge_text(_record()) == "✔ exit 0 · 12 ms · local"
    assert badge_text(_record("error", 2)) == "✘ exit 2 · 12 ms · local"


def test_passing_checks_are_counted_not_repeated():
    assert badge_text(_record(checks=[EXIT_0])) == "✔ 1 check · 12 ms · local"  # not "exit 0" twice
    both = _record(checks=[EXIT_0, _check("stdout /hi/", True)])
    assert badge_text(both) == "✔ 2 checks · 12 ms · local"
    assert _shown(badge_html(both)) == badge_text(both)


def test_a_failed_check_under_a_successful_command_names_the_check():
    data = _record(checks=[EXIT_0, GREETING])
    assert badge_text(data) == "✘ check 'greeting': no greeting in out.txt · 12 ms · local"
    assert "exit 0" not in badge_text(data)
    assert _shown(badge_html(data)) == badge_text(data)


def test_several_failed_checks_get_a_line_each():
    stderr = _check("stderr empty", False, "stderr is not empty: oops")
    lines = badge_text(_record(checks=[EXIT_0, GREETING, stderr])).splitlines()
    assert lines == ["✘ 2 of 3 checks failed · 12 ms · local", "✘ check 'greeting': no greeting in out.txt",
                     "✘ check 'stderr empty': stderr is not empty: oops"]


def test_a_failed_cell_says_how_it_ended_and_only_the_checks_that_add_to_it():
    not_run = _check("greeting", False, "not run: the cell failed before its code ran (MagicError)", kind="check")
    wrong_exit = _check("exit 0", False, "exit status 1, expected 0")
    stdout = _check("stdout /x/", False, "stdout does not match /x/")
    assert badge_text(_record("error", 1, [wrong_exit, not_run, stdout])).splitlines() == [
        "✘ exit 1 · 12 ms · local", "✘ check 'stdout /x/': stdout does not match /x/"]
    assert badge_text(_record("error", 0, [_check("exit 2", False)], expected_exit=2)) == \
        "✘ exit 0, expected 2 · 12 ms · local"
    assert badge_text(_record("error", 130, interrupted=True)) == "✘ interrupted · 12 ms · local"
    assert badge_text(_record("error", 130, interrupted=True, timed_out=True)) == "✘ timed out · 12 ms · local"


def test_under_an_error_block_the_badge_does_not_say_the_failure_again():
    """The error block says how the cell failed; the badge under it keeps the time,
    the target, and the failed checks the block does not name."""
    stdout = _check("stdout /x/", False, "stdout does not match /x/")
    assert badge_text(_record("error", 2), said="ShellError") == "12 ms · local"
    assert _shown(badge_html(_record("error", 2), said="ShellError")) == "12 ms · local"
    assert badge_text(_record("error", 1, [stdout]), said="ShellError").splitlines() == [
        "12 ms · local", "✘ check 'stdout /x/': stdout does not match /x/"]
    assert badge_text(_record("ok", 0, [stdout]), said="CheckFailed") == "12 ms · local"  # the block lists them
    task = _record("error", 2, task={"points": 2})
    assert badge_text(task, said="ShellError") == "✘ task · 2 points · 12 ms · local"


def test_a_task_says_so_and_its_points():
    data = _record(checks=[EXIT_0, _check("box", True)], task={"points": 6})
    assert badge_text(data) == "✔ task · 6 points · 2 checks · 12 ms · local"
    assert "task · 6 points · 2 checks" in _shown(badge_html(data))


def test_a_task_with_hidden_checks_says_which_points_they_give():
    shown = [{**EXIT_0, "points": 1.0}, {**_check("box", True), "points": 2.0}]
    data = _record(checks=shown, task={"points": 6})
    assert badge_text(data) == "✔ task · 6 points, 3 by hidden checks · 2 checks · 12 ms · local"
    assert badge_text(_record(checks=shown, task={"points": 3})) == "✔ task · 3 points · 2 checks · 12 ms · local"


def test_html_has_no_list_and_takes_its_colours_from_the_theme():
    markup = badge_html(_record(checks=[EXIT_0, GREETING, _check("other <b>", False, "a & b")]))
    assert "<ul" not in markup and "<li" not in markup  # list bullets show clipped left of an output
    assert "other &lt;b&gt;" in markup and "a &amp; b" in markup
    # each colour twice: a plain one where var() is dropped or unknown, then the theme's
    colours = re.findall(r"style='color:(#[0-9a-f]{6});color:var\(--jp-[a-z0-9-]+,(#[0-9a-f]{6})\)", markup)
    assert len(colours) == 3 and all(plain == fallback for plain, fallback in colours)


def test_nbconvert_html_shows_the_badge_as_lines(tmp_path):
    nb = nbformat.v4.new_notebook()
    data = _record(checks=[EXIT_0, GREETING, _check("stderr empty", False, "stderr is not empty")])
    bundle = {RECORD_MIME: data, "text/html": badge_html(data), "text/plain": badge_text(data)}
    nb.cells = [nbformat.v4.new_code_cell("echo hi", outputs=[nbformat.v4.new_output("display_data", bundle)])]
    page, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    body = page.split("<body", 1)[1]
    assert "<li" not in body
    assert "✘ check 'greeting': no greeting in out.txt" in _shown(body) and "2 of 3 checks failed" in body


def test_help_cells_get_no_badge_but_the_reply_keeps_the_record(start_kernel):
    kernel = start_kernel("local")
    for code in ("%help check", "%lsmagic", "%help nothing-such"):
        result = kernel.run(code)
        assert not [m for m in result.messages if m["msg_type"] == "display_data"], code
        assert result.reply["metadata"]["workshop"]["magics"], code
    ran = kernel.run("%help check\necho still a command")
    assert ran.record is not None and badge_text(ran.record).startswith("✔ exit 0")


def test_a_failing_cell_is_reported_once(start_kernel):
    kernel = start_kernel("local")
    for code, said in (("ls /nonexistent-ws", "ls /nonexistent-ws (exit 2)"), ("sleep 30", "interrupted")):
        if code.startswith("sleep"):
            timer = threading.Timer(1.0, kernel.interrupt)
            timer.start()
        result = kernel.run(code)
        assert len(result.errors) == 1 and said in result.errors[0]["evalue"], result.errors
        badges = [m["content"]["data"] for m in result.messages
                  if m["msg_type"] == "display_data" and RECORD_MIME in m["content"]["data"]]
        assert len(badges) == 1
        text = badges[0]["text/plain"]
        assert "✘" not in text and "exit" not in text and "interrupted" not in text and text.endswith(" · local"), text
        assert result.record["exit_status"] == (2 if code.startswith("ls") else 130)  # the record keeps it all
    failing_check = kernel.run("false\n%%check --name extra\necho 'FAIL: not there'; exit 1")
    assert failing_check.errors and "extra" not in failing_check.errors[0]["evalue"]
    badge = [m["content"]["data"]["text/plain"] for m in failing_check.messages
             if m["msg_type"] == "display_data" and RECORD_MIME in m["content"]["data"]][0]
    assert badge.splitlines()[1:] == ["✘ check 'extra': not there"]
