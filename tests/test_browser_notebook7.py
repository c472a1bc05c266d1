"""The kernel in Notebook 7 (the notebook interface built on JupyterLab's parts),
in Debian's Chromium driven by Playwright, as a student uses it: a command and
its badge, a failed check whose `$` signs stay text (MathJax typesets the
Markdown cell above it), and a 20 MB cell whose head, cut line and end show
while the next cell still runs in the same tab.  Screenshots go with the
JupyterLab ones (build/test-artifacts/browser-lab/notebook7-*.png)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import nbformat
import pytest
from test_browser_lab import WAIT_MS, _artifact, _chromium, open_page, press_run
from test_iopub_limits import Server

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.browser]

NOTEBOOK = "nb7.ipynb"
CELLS = {
    "hello": "echo hello",
    "maths": "The same page typesets $x^2$ in Markdown.",
    "dollar": "%expect stdout /^YOU-ARE-HERE$/\necho you are here",
    "big": "head -c 20000000 /dev/zero | tr '\\0' y | fold -w 99; echo THE-END",
}
INDEX = {name: i for i, name in enumerate(CELLS)}


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory, installed_kernelspec) -> Iterator[dict]:
    executable = _chromium()
    try:
        import notebook  # noqa: F401 (the server extension that serves /notebooks/)
    except ImportError:
        pytest.fail("Notebook 7 is missing: run scripts/setup --test (the test extra has it)")
    root = tmp_path_factory.mktemp("notebook7") / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
    nb.cells = [(nbformat.v4.new_markdown_cell if name == "maths" else nbformat.v4.new_code_cell)(source, id=name)
                for name, source in CELLS.items()]
    server = Server(root)
    try:
        server.put_notebook(NOTEBOOK, json.loads(nbformat.writes(nb)))
        with open_page(executable, server, f"notebooks/{NOTEBOOK}") as (_, page):
            yield {"page": page, "server": server}
    finally:
        server.stop()


def _wait_idle(page) -> None:
    """The kernel idle as Notebook 7's toolbar shows it."""
    from playwright.sync_api import expect

    indicator = page.locator(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator")
    expect(indicator).to_have_attribute("data-status", "idle", timeout=WAIT_MS)


def _cell(page, name: str):
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(INDEX[name])


def _run(page, name: str):
    from playwright.sync_api import expect

    cell = _cell(page, name)
    _wait_idle(page)
    press_run(page, cell)
    if name != "maths":
        expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=WAIT_MS)
    if name != "maths":
        cell.locator(".workshop-record").wait_for(timeout=WAIT_MS)  # the record comes last
    return cell


def test_a_command_shows_its_output_and_its_badge(notebook7):
    cell = _run(notebook7["page"], "hello")
    assert cell.locator(".jp-OutputArea-output pre").first.inner_text().strip() == "hello"
    assert cell.locator(".workshop-record").inner_text().startswith("✔ exit 0 · ")
    cell.screenshot(path=_artifact("notebook7-hello.png"))


def test_a_failed_check_with_dollars_reads_as_written(notebook7):
    from playwright.sync_api import expect

    page = notebook7["page"]
    _run(page, "maths")
    expect(_cell(page, "maths").locator("mjx-container").first).to_be_visible()  # MathJax is at work here
    cell = _run(page, "dollar")
    want = "✘ check 'stdout /^YOU-ARE-HERE$/': stdout does not match /^YOU-ARE-HERE$/"
    for _ in range(10):  # typesetting is asynchronous: the text must stay as written
        assert want in cell.locator(".workshop-record").inner_text()
        assert cell.locator(".workshop-record mjx-container, .workshop-record .MathJax").count() == 0
        page.wait_for_timeout(200)
    cell.screenshot(path=_artifact("notebook7-dollars.png"))


def test_a_cell_printing_20_mb_shows_head_and_tail_and_the_next_cell_runs(notebook7):
    page = notebook7["page"]
    cell = _run(page, "big")
    shown = cell.locator(".jp-OutputArea-output").first.inner_text()
    assert shown.startswith("y" * 99 + "\n") and "[workshop: output cut here, at 1,048,576 characters" in shown
    assert "THE-END\n\n[workshop: 20,202,028 bytes in all" in shown, shown[-300:]
    assert _run(page, "hello").locator(".workshop-record").inner_text().startswith("✔ exit 0")
