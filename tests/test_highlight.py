"""nbconvert's HTML highlights a cell as JupyterLab does: magic lines and %%check
sections apart from the shell, an apostrophe in a %expect line opening no string.

The export runs `jupyter nbconvert` as a reader does, with the package's
``pygments.lexers`` entry point as setup.cfg declares it (written into a
dist-info of its own, as an install writes it)."""

from __future__ import annotations

import configparser
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workshop.language import LANGUAGE_INFO

ROOT = Path(__file__).resolve().parent.parent
CELL = "%expect stdout-contains container's\necho hi\n%%check --name quoted\necho 'FAIL: it is not'"

pytestmark = pytest.mark.slow


def _entry_points(where: Path) -> Path:
    """A dist-info with the entry points setup.cfg declares, for the lexer to be found."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lexers = config["options.entry_points"]["pygments.lexers"].strip()
    info = where / "workshop_highlight-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: workshop-highlight\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[pygments.lexers]\n{lexers}\n")
    return where


def _lines(page: str) -> list[list[tuple[str, str]]]:
    """The code cell's lines as (Pygments class, text) spans; "" for unmarked text."""
    code = re.search(r'<div class="highlight[^"]*"><pre><span></span>(.*?)</pre>', page, re.S).group(1)
    lines = []
    for line in code.split("\n"):
        spans = re.findall(r'<span class="([^"]+)">(.*?)</span>|([^<]+)', line)
        lines.append([(cls, html.unescape(text or plain)) for cls, text, plain in spans if (text or plain).strip()])
    return lines


def test_nbconvert_html_highlights_magics_and_checks_apart_from_the_shell(tmp_path):
    assert LANGUAGE_INFO["pygments_lexer"] == "workshop"
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
    nb.metadata.language_info = dict(LANGUAGE_INFO)
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    path = tmp_path / "cells.ipynb"
    path.write_text(nbformat.writes(nb))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_entry_points(tmp_path / "site")), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "No lexer found" not in done.stderr
    lines = _lines((tmp_path / "cells.html").read_text())
    assert lines[0] == [("nd", "%expect"), ("sx", "stdout-contains"), ("sx", "container's")]
    assert lines[1] == [("nb", "echo"), ("", "hi")]  # shell again: the apostrophe opened no string
    assert lines[2] == [("nd", "%%check"), ("na", "--name"), ("sx", "quoted")]
    assert lines[3] == [("nb", "echo"), ("s1", "'FAIL: it is not'")]


def test_every_character_of_a_cell_is_kept(tmp_path):
    from workshop.highlight import WorkshopLexer

    cells = [CELL, "  %%chroot rootfs\n\nls '\n%%check\n", "echo 'open\n%%check\ntest -e x", "%timeout 5", ""]
    for cell in cells:
        assert "".join(value for _, _, value in WorkshopLexer().get_tokens_unprocessed(cell)) == cell
    # a string left open in the body ends at the %%check line
    tokens = list(WorkshopLexer().get_tokens_unprocessed(cells[2]))
    assert any(value == "%%check" and "Decorator" in str(token) for _, token, value in tokens)
