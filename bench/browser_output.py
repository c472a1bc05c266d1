"""How long JupyterLab in Chromium takes to show a cell's output, by size shown.

A cell prints BYTES (default 20 MB) of 100-character lines; the kernel shows the
first LIMIT characters (WORKSHOP_SERVER_OUTPUT_LIMIT) and cuts the rest.  For
each limit the time from pressing run until the cell's prompt has its number
and the kernel is idle again, then for a one-line cell after it in the same tab.
Run as root on a machine with Debian's chromium:

    PYTHONPATH=.:tests /opt/workshop/bin/python bench/browser_output.py 262144 1048576 4194304
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from playwright.sync_api import sync_playwright
from test_browser_lab import _chromium, _wait_idle
from test_iopub_limits import Server

BYTES = 20_000_000


def measure(limit: int, executable: str) -> tuple[float, float]:
    base = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    root = base / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
    nb.cells = [nbformat.v4.new_code_cell(f"head -c {BYTES} /dev/zero | tr '\\0' y | fold -w 99", id="big"),
                nbformat.v4.new_code_cell("echo next", id="next")]
    server = Server(root, WORKSHOP_SERVER_OUTPUT_LIMIT=str(limit))
    try:
        server.put_notebook("b.ipynb", json.loads(nbformat.writes(nb)))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(900_000)
            page.goto(f"http://127.0.0.1:{server.port}/lab/tree/b.ipynb?token={server.token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
            _wait_idle(page)
            times = []
            for i in range(2):
                cell = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(i)
                cell.locator(".jp-InputPrompt").click()
                started = time.monotonic()
                page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']").click()
                cell.locator(".jp-InputPrompt").filter(has_text="[1]" if i == 0 else "[2]").wait_for()
                _wait_idle(page)
                times.append(time.monotonic() - started)
            browser.close()
    finally:
        server.stop()
    return times[0], times[1]


def main() -> None:
    executable = _chromium()
    print(f"{'shown (chars)':>14} {'big cell (s)':>13} {'next cell (s)':>14}")
    for limit in map(int, sys.argv[1:] or ["262144", "1048576", "4194304"]):
        big, nxt = measure(limit, executable)
        print(f"{limit:>14,} {big:>13.1f} {nxt:>14.1f}", flush=True)


if __name__ == "__main__":
    main()
