"""The kernel as a student meets it: JupyterLab in Debian's Chromium.

The test starts a Jupyter server with JupyterLab on loopback with a token,
opens a notebook made for the Workshop kernel in Chromium driven by Playwright,
and does what a student does: runs cells, stops a running one with the toolbar's
stop button, answers an input box, presses Tab after a magic's first letters,
and switches to the dark theme.  Screenshots of the badges in both themes, and
of nbconvert's HTML export of the saved notebook, are kept under
build/test-artifacts/browser-lab/ (the path is printed).

Kernel states are read from JupyterLab's own DOM (the toolbar's execution
indicator and the cells' prompts), never waited for with sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter
from test_iopub_limits import Server  # a jupyter_server on loopback; JupyterLab is its extension
from test_kernel_shell import _png

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artifacts" / "browser-lab"
CHROMIUM = "/usr/bin/chromium"
MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")  # Debian's libjs-mathjax: MathJax 2, as nbconvert loads
WAIT_MS = 120_000  # a busy two-core machine starts JupyterLab and the kernel slowly
NOTEBOOK = "lab.ipynb"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELLS = {
    "hello": "echo hello",
    "check": "%expect stdout-contains bye\necho hello",
    "maths": "The same page typesets $x^2$ in Markdown.",  # a Markdown cell: MathJax is at work here
    "dollar": "%expect stdout /^YOU-ARE-HERE$/\necho you are here\n%%check --name price\necho 'FAIL: $5, not $6'; exit 1",
    "sleep": "sleep 100",
    "input": 'read -p "name? " n; echo hi $n',
    "display": "display red.png page.html",
    "complete": "",
    "tooltip": "%%cgroup --memory 100M\necho in a cgroup",
    "highlight": "%expect stdout-contains container's\necho hi\n%%check --name quoted\necho 'FAIL: it is not'",
    "big": "head -c 20000000 /dev/zero | tr '\\0' y | fold -w 99; echo THE-END",  # 20,202,028 bytes
    "magics": "%help",
    "help": "%help check",  # last: its long text would push the others out of the screenshots
}
INDEX = {name: i for i, name in enumerate(CELLS)}
MARKDOWN = {"maths"}
# JupyterLab's settings for the test: no question about news over the notebook.
SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"}}


def _chromium() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    elsewhere = shutil.which("chromium") or shutil.which("chromium-browser")  # Ubuntu's name
    if elsewhere:
        return elsewhere
    policy = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True, text=True) \
        if shutil.which("apt-cache") else None
    if policy is None or "Candidate: (none)" in policy.stdout or "chromium:" not in policy.stdout:
        pytest.skip("Chromium cannot be installed here: apt has no chromium package, and browsers cannot be downloaded")
    pytest.fail(f"{CHROMIUM} is missing: run scripts/setup --test (it installs the chromium package)")


def _say(config, line: str) -> None:
    """A line on the terminal even under -q and output capture: where to look at the badges."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n{line}")


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    print(f"screenshot: {path}")
    return path


@contextlib.contextmanager
def chromium_page(executable: str, height: int = 1000) -> Iterator[tuple]:
    """Debian's Chromium with one blank page, closed afterwards: (browser, page)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.set_default_timeout(WAIT_MS)
            yield browser, page
        finally:
            browser.close()


@contextlib.contextmanager
def open_page(executable: str, server, path: str) -> Iterator[tuple]:
    """Chromium with the server's page at ``path`` open and its notebook's cells shown: (browser, page)."""
    with chromium_page(executable) as (browser, page):
        page.goto(f"http://127.0.0.1:{server.port}/{path}?token={server.token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        yield browser, page


@pytest.fixture(scope="module")
def lab(tmp_path_factory, installed_kernelspec, request) -> Iterator[dict]:
    """JupyterLab with the notebook open in Chromium, its kernel idle."""
    executable = _chromium()
    request.addfinalizer(lambda: _say(request.config, f"browser screenshots: {ARTIFACTS}"))

    base = tmp_path_factory.mktemp("browser-lab")
    root, settings = base / "root", base / "lab-settings"
    root.mkdir()
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
    nb.cells = [(nbformat.v4.new_markdown_cell if name in MARKDOWN else nbformat.v4.new_code_cell)(source, id=name)
                for name, source in CELLS.items()]
    (root / "red.png").write_bytes(_png(60, 30, (220, 0, 0)))
    (root / "page.html").write_text("<p id='page'>A page: costs $5, not $6</p>")
    server = Server(root, JUPYTERLAB_SETTINGS_DIR=str(settings))
    try:
        server.put_notebook(NOTEBOOK, json.loads(nbformat.writes(nb)))
        with open_page(executable, server, f"lab/tree/{NOTEBOOK}") as (browser, page):
            _wait_idle(page)
            yield {"page": page, "browser": browser, "server": server, "base": base}
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _page_after_each_test(lab, request) -> Iterator[None]:
    """The page as each test left it, to see what went wrong where."""
    yield
    lab["page"].screenshot(path=_artifact(f"after-{request.node.name}.png"))


# ---- what a student does, and what JupyterLab shows ------------------------------
def _cell(page, name: str | int):
    """A cell of the lab notebook by its name, or of another notebook by its index."""
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(INDEX[name] if isinstance(name, str) else name)


def _wait_idle(page) -> None:
    """The kernel is idle as JupyterLab shows it: in the status bar (the toolbar's
    indicator alone says idle before the kernel is connected) and the toolbar."""
    from playwright.sync_api import expect

    status = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"^Workshop \(bash\) \| "))
    expect(status).to_have_text("Workshop (bash) | Idle", timeout=WAIT_MS)
    indicator = page.locator(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator")
    expect(indicator).to_have_attribute("data-status", "idle", timeout=WAIT_MS)


def _start(page, name: str | int) -> None:
    press_run(page, _cell(page, name))


def press_run(page, cell, tries: int = 3) -> None:
    """Select the cell and press the toolbar's run button, as a student does.  A code
    cell's prompt turns from `[ ]:` to `[*]:` at once; when it does not, the click
    landed before the page had wired its toolbar (seen once on a loaded CI machine: the
    prompt stayed `[ ]:` for two minutes) and is made again, as a student would."""
    from playwright.sync_api import expect

    prompt = cell.locator(".jp-InputPrompt")
    for attempt in range(tries):
        prompt.click()
        page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']").click()
        if "jp-CodeCell" not in (cell.get_attribute("class") or "") or attempt == tries - 1:
            return
        try:
            expect(prompt).not_to_have_text(re.compile(r"^\[ \]:$"), timeout=15_000)
            return
        except AssertionError:
            continue


def _finished(page, name: str | int, timeout: float = WAIT_MS):
    """The cell once its prompt shows its execution count and the kernel is idle again."""
    from playwright.sync_api import expect

    cell = _cell(page, name)
    expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout)
    _wait_idle(page)
    return cell


def _run(page, name: str | int, timeout: float = WAIT_MS):
    _start(page, name)
    return _finished(page, name, timeout)


def _badge(cell) -> str:
    return cell.locator(".workshop-record").inner_text()


# ---- the tests -----------------------------------------------------------------
def test_a_command_shows_its_output_and_a_check_mark(lab):
    cell = _run(lab["page"], "hello")
    assert cell.locator(".jp-OutputArea-output pre").first.inner_text().strip() == "hello"
    badge = _badge(cell)
    assert badge.startswith("✔ exit 0 · "), badge
    assert len(badge.splitlines()) == 1


def test_a_failed_check_shows_a_cross_with_the_check_name(lab):
    badge = _badge(_run(lab["page"], "check"))
    assert badge.startswith("✘ check 'stdout-contains bye': stdout does not contain 'bye'"), badge
    assert "exit 0" not in badge


def test_a_failed_check_with_dollars_reads_as_written_not_as_maths(lab):
    """A regex ending in $ and a FAIL message with two: MathJax, which typesets the
    Markdown cell above, leaves the badge alone."""
    from playwright.sync_api import expect

    page = lab["page"]
    maths = _cell(page, "maths")
    expect(maths.locator("mjx-container").first).to_be_visible()  # MathJax is loaded and at work
    cell = _run(page, "dollar")
    lines = cell.locator(".workshop-record > div")
    expect(lines).to_have_count(3)
    expect(lines.nth(0)).to_have_text(re.compile(r"^✘ 2 of 2 checks failed · \d+ ms · local$"))
    want = ["✘ check 'stdout /^YOU-ARE-HERE$/': stdout does not match /^YOU-ARE-HERE$/",
            "✘ check 'price': $5, not $6"]
    # Typesetting is asynchronous: the text must stay as written while MathJax would have had its turn.
    for _ in range(10):
        assert [lines.nth(1).inner_text(), lines.nth(2).inner_text()] == want
        assert cell.locator(".workshop-record mjx-container, .workshop-record .MathJax").count() == 0
        page.wait_for_timeout(200)
    cell.evaluate("cell => cell.scrollIntoView({block: 'start'})")
    cell.locator(".jp-OutputArea").screenshot(path=_artifact("failed-check-with-dollars.png"))


def test_the_stop_button_interrupts_a_running_cell(lab):
    from playwright.sync_api import expect

    page = lab["page"]
    _start(page, "sleep")
    expect(_cell(page, "sleep").locator(".jp-InputPrompt")).to_have_text("[*]:")
    expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute("data-status", "busy")
    page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:interrupt-kernel']").click()
    cell = _finished(page, "sleep")
    assert "interrupted" in cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")\
        .first.inner_text()
    said = cell.locator(".jp-OutputArea").inner_text()
    assert said.count("interrupted") == 1, said  # once, in the error block: the badge under it does not repeat it
    assert re.fullmatch(r"[\d.]+ m?s · local", _badge(cell).strip()), _badge(cell)
    assert _badge(_run(page, "hello")).startswith("✔ exit 0")  # the shell is still there, and usable


def test_an_input_box_answers_read(lab):
    page = lab["page"]
    _start(page, "input")
    box = _cell(page, "input").locator(".jp-Stdin-input")
    box.wait_for()
    assert _cell(page, "input").locator(".jp-Stdin-prompt").inner_text().strip() == "name?"
    box.fill("Ada")
    box.press("Enter")
    cell = _finished(page, "input")
    assert "hi Ada" in cell.locator(".jp-OutputArea").inner_text()
    assert _badge(cell).startswith("✔ exit 0")


def test_display_shows_a_picture_and_a_page(lab):
    cell = _run(lab["page"], "display")
    image = cell.locator(".jp-OutputArea-output img")
    image.wait_for()
    assert image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, 60, 30]
    colour = image.evaluate("""img => { const c = document.createElement('canvas'); c.width = 60; c.height = 30;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0); return [...g.getImageData(30, 15, 1, 1).data]; }""")
    assert colour == [220, 0, 0, 255]
    page = cell.locator(".jp-OutputArea-output #page")
    assert page.inner_text() == "A page: costs $5, not $6"  # HTML shown as HTML, its dollars not maths
    assert _badge(cell).startswith("✔ exit 0")
    cell.locator(".jp-OutputArea").screenshot(path=_artifact("display.png"))


def test_a_cell_printing_20_mb_shows_head_and_tail_and_the_tab_goes_on(lab):
    """20 MB once froze the tab for minutes (8 MiB shown): a browser is shown the head,
    a line at once where it was cut and where the whole is saved, and the end."""
    page = lab["page"]
    started = time.monotonic()
    cell = _run(page, "big")
    shown = cell.locator(".jp-OutputArea-output").first.inner_text()
    assert shown.startswith("y" * 99 + "\n"), shown[:200]
    assert "[workshop: output cut here, at 1,048,576 characters; all of it is being saved in workshop-outputs/" \
        in shown
    assert shown.rstrip().endswith("\n" + "y" * 20 + "THE-END\n\n[workshop: 20,202,028 bytes in all; the record "
                                   "counts all of it]"), shown[-300:]
    saved = sorted((lab["server"].root / "workshop-outputs").glob("*.stdout.txt"))
    assert len(saved) == 1 and saved[0].stat().st_size == 20_202_028
    assert _badge(_run(page, "hello")).startswith("✔ exit 0")  # the same tab, the next cell
    # a frozen tab takes minutes (12 once); this bounds it generously for a busy two-core machine
    assert time.monotonic() - started < 180


def test_help_alone_lists_the_magics(lab):
    cell = _run(lab["page"], "magics")
    text = cell.locator(".jp-OutputArea").inner_text()
    lines = [line for line in text.splitlines() if line.strip().startswith("%")]
    assert {line.split()[0] for line in lines} >= {"%help", "%target", "%expect", "%%check", "%%chroot", "%%overlay"}
    assert all(len(line.split()) > 1 for line in lines), lines  # each with what it does, on its line
    assert cell.locator(".workshop-record").count() == 0
    assert cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    cell.locator(".jp-OutputArea").screenshot(path=_artifact("help-alone.png"))


def test_help_shows_its_text_and_no_badge(lab):
    cell = _run(lab["page"], "help")
    assert "%%check" in cell.locator(".jp-OutputArea").inner_text()
    assert cell.locator(".workshop-record").count() == 0


def test_tab_after_a_magics_first_letters_offers_it(lab):
    page = lab["page"]
    editor = _cell(page, "complete").locator(".cm-content")
    editor.click()
    page.keyboard.type("%ta")
    page.keyboard.press("Tab")
    # one match is put in at once, several are listed
    offered = page.wait_for_function(
        """index => {
            const items = [...document.querySelectorAll('.jp-Completer-item .jp-Completer-match')];
            const cells = document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell');
            const text = cells[index].querySelector('.cm-content').innerText;
            return items.some(i => i.innerText.trim() === '%target') || text.startsWith('%target');
        }""", arg=INDEX["complete"], timeout=30_000)
    assert offered
    page.screenshot(path=_artifact("tab-completion.png"))
    page.keyboard.press("Escape")


def test_shift_tab_on_a_magic_shows_its_help_whole(lab):
    """In a laptop's window beside the file browser: the help's lines wrap inside the tooltip, none is cut."""
    page = lab["page"]
    page.set_viewport_size({"width": 1000, "height": 1000})
    try:
        editor = _cell(page, "tooltip").locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+Home")
        page.keyboard.press("End")
        page.keyboard.press("Shift+Tab")
        tooltip = page.locator(".jp-Tooltip")
        tooltip.wait_for()
        page.wait_for_function("() => document.querySelector('.jp-Tooltip').innerText.includes('%%cgroup')")
        sizes = tooltip.evaluate("""t => { const r = t.getBoundingClientRect();
            const cut = [...t.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0);
            return {right: r.right, width: innerWidth, cut: cut.map(e => `${e.className} ${e.scrollWidth}>${e.clientWidth}`)}; }""")
        page.screenshot(path=_artifact("tooltip.png"))
        assert sizes["right"] <= sizes["width"], sizes
        assert not sizes["cut"], sizes
        page.keyboard.press("Escape")
    finally:
        page.set_viewport_size({"width": 1280, "height": 1000})


_COLOUR_OF = """([index, line, word]) => {
    const cell = document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')[index];
    const row = cell.querySelectorAll('.cm-content .cm-line')[line];
    const walker = document.createTreeWalker(row, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.textContent.includes(word)) return getComputedStyle(node.parentElement).color;
    }
    return null;
}"""


def _colour(page, name: str, line: int, word: str) -> str:
    return page.evaluate(_COLOUR_OF, [INDEX[name], line, word])


def test_magic_lines_and_check_sections_are_highlighted_apart_from_the_shell(lab):
    """An apostrophe in a %expect line no longer opens a string over the rest of the
    cell, and the %%check section is shell of its own below a magic line."""
    page = lab["page"]
    cell = _cell(page, "highlight")
    cell.locator(".cm-content").wait_for()
    cell.evaluate("cell => cell.scrollIntoView({block: 'center'})")
    shell_echo = _colour(page, "hello", 0, "echo")  # `echo hello`: bash's colour of a builtin
    plain = _colour(page, "display", 0, "red.png")  # a plain word
    assert shell_echo != plain
    assert _colour(page, "highlight", 1, "echo") == shell_echo  # below the apostrophe, still shell
    assert _colour(page, "highlight", 3, "echo") == shell_echo  # the check's script
    magic = _colour(page, "highlight", 0, "%expect")
    assert magic == _colour(page, "highlight", 2, "%%check") and magic not in (plain, shell_echo)
    assert _colour(page, "highlight", 0, "container's") != _colour(page, "highlight", 3, "'FAIL: it is not'")
    cell.screenshot(path=_artifact("highlighting.png"))


def test_badges_read_in_light_and_dark_theme(lab):
    page = lab["page"]
    for name in ("hello", "check"):
        if not _cell(page, name).locator(".workshop-record").count():
            _run(page, name)
    page.locator(".jp-NotebookPanel-toolbar [data-command='docmanager:save']").click()
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        _choose_theme(page, theme)
        marks = _mark_contrasts(page)
        assert {m["mark"] for m in marks} == {"✔", "✘"}, marks
        for mark in marks:
            assert mark["contrast"] >= 3, f"{theme}: {mark['text']!r} is {mark['contrast']:.1f}:1 on its background"
        slug = theme.split()[-1].lower()
        _cell(page, "hello").evaluate("cell => cell.scrollIntoView({block: 'start'})")
        page.locator(".jp-NotebookPanel").screenshot(path=_artifact(f"lab-{slug}.png"))
        _cell(page, "check").locator(".jp-OutputArea").screenshot(path=_artifact(f"lab-{slug}-failed-check.png"))


def test_nbconvert_html_shows_the_badges_in_both_themes(lab):
    saved = lab["server"].get_notebook(NOTEBOOK)
    nb = nbformat.from_dict(saved)
    assert any(o.get("data", {}).get("text/html") for c in nb.cells for o in c.get("outputs", [])), \
        "the notebook was saved without badges"
    page = lab["browser"].new_page(viewport={"width": 1000, "height": 900})
    try:
        for theme in ("light", "dark"):
            body, _ = HTMLExporter(template_name="lab", theme=theme).from_notebook_node(nb)
            path = lab["base"] / f"export-{theme}.html"
            path.write_text(body, encoding="utf-8")
            page.goto(path.as_uri())
            assert page.locator(".workshop-record li").count() == 0
            marks = _mark_contrasts(page)
            assert {m["mark"] for m in marks} == {"✔", "✘"}, marks
            for mark in marks:
                assert mark["contrast"] >= 3, f"nbconvert {theme}: {mark['text']!r} is {mark['contrast']:.1f}:1"
            page.screenshot(path=_artifact(f"nbconvert-{theme}.png"), full_page=True)
    finally:
        page.close()


def test_nbconvert_html_with_mathjax_leaves_the_dollars_of_a_badge_alone(lab):
    """nbconvert's templates load MathJax 2 (from a CDN; here Debian's copy, offline)."""
    if not MATHJAX.exists():
        pytest.fail(f"{MATHJAX} is missing: run scripts/setup --test (it installs libjs-mathjax)")
    page = lab["page"]
    if not _cell(page, "dollar").locator(".workshop-record").count():
        _run(page, "dollar")
    page.locator(".jp-NotebookPanel-toolbar [data-command='docmanager:save']").click()
    nb = _saved(lab, "dollar")
    body, _ = HTMLExporter(template_name="lab", mathjax_url=f"{MATHJAX.as_uri()}?config=TeX-AMS_CHTML-full,Safe")\
        .from_notebook_node(nb)
    path = lab["base"] / "export-mathjax.html"
    path.write_text(body, encoding="utf-8")
    export = lab["browser"].new_page(viewport={"width": 1000, "height": 900})
    try:
        export.goto(path.as_uri())
        export.locator(".jp-MarkdownCell .MathJax_CHTML").first.wait_for()  # MathJax typeset the Markdown
        export.wait_for_function("() => window.MathJax && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running")
        lines = [line.strip() for line in export.locator(".workshop-record").nth(_badge_index(nb, "dollar"))
                 .inner_text().splitlines()]
        assert lines[1:] == ["✘ check 'stdout /^YOU-ARE-HERE$/': stdout does not match /^YOU-ARE-HERE$/",
                             "✘ check 'price': $5, not $6"], lines
        assert export.locator(".workshop-record .MathJax_CHTML, .workshop-record .MathJax").count() == 0
        record = export.locator(".workshop-record").nth(_badge_index(nb, "dollar"))
        record.evaluate("el => el.scrollIntoView({block: 'center'})")
        export.screenshot(path=_artifact("nbconvert-mathjax-failed-check.png"))
    finally:
        export.close()


def _saved(lab, name: str):
    """The notebook as the server has it once it holds the cell's badge (saving is asynchronous)."""
    for _ in range(300):
        nb = nbformat.from_dict(lab["server"].get_notebook(NOTEBOOK))
        if any("text/html" in o.get("data", {}) for c in nb.cells if c.get("id") == name for o in c.get("outputs", [])):
            return nb
        lab["page"].wait_for_timeout(100)
    raise AssertionError(f"the notebook was not saved with the badge of {name!r}")


def _badge_index(nb, name: str) -> int:
    """Which badge of the exported page is the cell's: cells with a badge, in order."""
    with_badge = [c.get("id") for c in nb.cells if any("text/html" in o.get("data", {}) for o in c.get("outputs", []))]
    return with_badge.index(name)


def test_a_notebook_lab_does_not_trust_still_shows_coloured_badges(lab):
    """An instructor opening a student's notebook: JupyterLab sanitizes its HTML
    outputs, which drops the theme's var() colours; the plain ones stay."""
    nb = nbformat.from_dict(lab["server"].get_notebook(NOTEBOOK))
    for cell in nb.cells:
        cell.metadata.pop("trusted", None)  # the server's mark, not part of a file handed in
    # JupyterLab trusts what its server signed, by content: a student's notebook differs
    nb.cells.append(nbformat.v4.new_markdown_cell("Handed in by Ada."))
    nbformat.write(nb, str(lab["base"] / "root" / "from-a-student.ipynb"))
    page = lab["browser"].new_page(viewport={"width": 1280, "height": 700})
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"http://127.0.0.1:{lab['server'].port}/lab/workspaces/instructor/tree/from-a-student.ipynb"
                  f"?token={lab['server'].token}")
        page.locator(".jp-NotebookPanel .workshop-record").first.wait_for()
        styles = page.evaluate("() => [...document.querySelectorAll('.workshop-record span')].map(s => s.style.cssText)")
        assert not any("var(" in style for style in styles), styles  # it was sanitized, as untrusted
        for theme in ("JupyterLab Dark", "JupyterLab Light"):
            _choose_theme(page, theme)
            marks = _mark_contrasts(page)
            assert {m["mark"] for m in marks} == {"✔", "✘"}, marks
            for mark in marks:
                assert mark["contrast"] >= 3, f"untrusted, {theme}: {mark['text']!r} is {mark['contrast']:.1f}:1"
            _cell(page, "hello").evaluate("cell => cell.scrollIntoView({block: 'start'})")
            page.locator(".jp-NotebookPanel").screenshot(path=_artifact(f"untrusted-{theme.split()[-1].lower()}.png"))
    finally:
        page.close()


def test_a_shipped_notebook_opens_without_unsaved_changes(lab):
    """JupyterLab writes the kernel's language_info into the notebook it opens: a
    notebook saved with less (as they were, the control) shows as changed at once."""
    from playwright.sync_api import expect

    shipped = (NOTEBOOKS / "01-rootfs-and-chroot.ipynb").read_text(encoding="utf-8")
    root = lab["base"] / "root"
    (root / "shipped.ipynb").write_text(shipped, encoding="utf-8")
    old = json.loads(shipped)
    old["metadata"]["language_info"] = {"name": "bash"}
    (root / "as-before.ipynb").write_text(json.dumps(old), encoding="utf-8")
    for name, changed in (("as-before.ipynb", True), ("shipped.ipynb", False)):
        page = lab["browser"].new_page(viewport={"width": 1280, "height": 700})
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(f"http://127.0.0.1:{lab['server'].port}/lab/workspaces/{name.split('.')[0]}/tree/{name}"
                      f"?token={lab['server'].token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
            _wait_idle(page)
            dirty = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-dirty")
            if changed:
                expect(dirty).to_have_count(1)
                continue
            for _ in range(10):  # the kernel answered; nothing may mark the notebook changed after it
                assert dirty.count() == 0
                page.wait_for_timeout(200)
            page.screenshot(path=_artifact("shipped-notebook-opened.png"))
        finally:
            page.close()
    for session in lab["server"].call("GET", "/api/sessions"):  # their kernels: this machine has two cores
        if session["path"] in ("shipped.ipynb", "as-before.ipynb"):
            lab["server"].call("DELETE", f"/api/sessions/{session['id']}")


VM_NAME = "wsbrowser"
VM_CELLS = [f"%target qemu:{VM_NAME}", "mkdir -p /root/tabs && cd /root/tabs && touch alpha.txt alphabet && hostname", ""]


def _offered(page, cell: int) -> list[str]:
    """Tab in the cell's editor: what the completer lists, or the one match JupyterLab
    put in (the cell's text, once it changed and no list came within a second).  Tab
    again after 3 s without an answer, as a student does: right after a VM booted, the
    first directory read over SFTP can miss JupyterLab's one second."""
    editor = _cell(page, cell).locator(".cm-content")
    items = page.locator(".jp-Completer-item .jp-Completer-match:visible")
    before = editor.inner_text().strip()
    for _ in range(3):
        page.keyboard.press("Tab")
        deadline, changed_at = time.monotonic() + 3, None
        while time.monotonic() < deadline or changed_at:
            if items.count():
                return [item.inner_text().strip() for item in items.all()]
            if editor.inner_text().strip() != before:
                changed_at = changed_at or time.monotonic()
                if time.monotonic() - changed_at > 1:
                    return [editor.inner_text().strip()]
            page.wait_for_timeout(100)
    return []


@pytest.mark.vm
def test_tab_on_a_vm_offers_its_files_and_commands_before_lab_gives_up(lab):
    """A `qemu:` VM under TCG answers Tab in time for JupyterLab (which drops replies
    slower than 1 s): the files of the VM's working directory where an argument is
    written, its commands where a command is."""
    root = lab["base"] / "root"
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in VM_CELLS]
    (root / "vm.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    page = lab["browser"].new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"http://127.0.0.1:{lab['server'].port}/lab/workspaces/vm/tree/vm.ipynb?token={lab['server'].token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        _wait_idle(page)
        said = _run(page, 0).locator(".jp-OutputArea").inner_text()
        assert f"the next cell boots the VM {VM_NAME} first: " in said, said
        # while it boots: the step and its seconds, said again each second
        _start(page, 1)
        output = _cell(page, 1).locator(".jp-OutputArea")
        page.wait_for_function("""index => /\\d+ s/.test(document.querySelectorAll(
            '.jp-NotebookPanel .jp-Notebook .jp-Cell')[index].querySelector('.jp-OutputArea').innerText)""", arg=1)
        first = output.inner_text()
        page.wait_for_function("""([index, first]) => document.querySelectorAll(
            '.jp-NotebookPanel .jp-Notebook .jp-Cell')[index].querySelector('.jp-OutputArea').innerText !== first""",
                               arg=[1, first], timeout=5_000)
        page.screenshot(path=_artifact("vm-booting.png"))
        booted = _finished(page, 1, timeout=900_000)
        text = booted.locator(".jp-OutputArea").inner_text()
        assert "\nworkshop\n" in text  # the VM's hostname
        if "(TCG)" in text:  # why it is slow stays in view above the last step
            assert text.index("TCG software emulation") < text.index(f"'{VM_NAME}' is up"), text
        booted.screenshot(path=_artifact("vm-booted.png"))
        _cell(page, 2).locator(".cm-content").click()
        page.keyboard.type("cat alph")
        # the kernel's matches (JupyterLab adds words of the cell itself, as `cat`)
        assert [m for m in _offered(page, 2) if m.startswith("alph")] == ["alpha.txt", "alphabet"]
        page.screenshot(path=_artifact("vm-tab-files.png"))
        page.keyboard.press("Escape")
        page.locator(".jp-Completer").wait_for(state="hidden")
        page.keyboard.press("Control+a")
        page.keyboard.type("hostn")
        assert "hostname" in _offered(page, 2)
        page.screenshot(path=_artifact("vm-tab-command.png"))
    finally:
        page.close()
        for session in lab["server"].call("GET", "/api/sessions"):
            if session["path"] == "vm.ipynb":
                lab["server"].call("DELETE", f"/api/sessions/{session['id']}")
        subprocess.run([sys.executable, "-m", "workshop", "vm", "destroy", VM_NAME], capture_output=True)


# ---- themes and colours --------------------------------------------------------
def _choose_theme(page, theme: str) -> None:
    """Settings → Theme → ``theme`` from JupyterLab's menu bar."""
    if page.evaluate("() => document.body.dataset.jpThemeName") == theme:
        return
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(theme)}$")).click()
    page.wait_for_function("theme => document.body.dataset.jpThemeName === theme", arg=theme)
    page.locator("#jupyterlab-splash").wait_for(state="detached")  # shown while the theme loads


_COLOURS = """() => {
    const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
    const background = el => {
        for (; el; el = el.parentElement) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    return [...document.querySelectorAll('.workshop-record span')]
        .filter(span => /^[✔✘]/.test(span.textContent))
        .map(span => ({text: span.textContent, colour: rgb(getComputedStyle(span).color).slice(0, 3),
                       background: background(span)}));
}"""


def _luminance(rgb: list[float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _mark_contrasts(page) -> list[dict]:
    """Each ✔/✘ of the badges shown, with its WCAG contrast ratio on the background behind it."""
    found = []
    for mark in page.evaluate(_COLOURS):
        light, dark = sorted((_luminance(mark["colour"]), _luminance(mark["background"])), reverse=True)
        found.append({**mark, "mark": mark["text"][0], "contrast": (light + 0.05) / (dark + 0.05)})
    return found
