"""A small assignment for the tests: two code tasks, a hidden check in a task,
a hidden cell of checks, and a Markdown answer graded by hand."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

KERNELSPEC = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}

BOX_SOLUTION = "mkdir -p box\necho hello > box/note"
COUNT_SOLUTION = "printf 'a\\nb\\nc\\n' > lines.txt\nwc -l < lines.txt"
ANSWER = "It shares the process IDs of the host."
HIDDEN_TEXT = ["box/note does not say hello", "note-says-hello", "middle-line", "grep -qx b lines.txt",
               "the middle line is not b"]
SOLUTION_TEXT = ["echo hello > box/note", "printf 'a", ANSWER]
VISIBLE_POINTS = 1 + 1 + 2 + 1 + 1  # setup exit, box exit, box-exists, count stdout, three-lines
HIDDEN_POINTS = 3 + 2
MANUAL_POINTS = 2

BOX = (f"%expect exit 0\n### BEGIN SOLUTION\n{BOX_SOLUTION}\n### END SOLUTION\n"
       "%%check --name box-exists --points 2\n[ -d box ] || echo \"FAIL: there is no directory box\"\n"
       "%%check --hidden --name note-says-hello --points 3\n"
       "[ \"$(cat box/note 2>/dev/null)\" = hello ] || echo \"FAIL: box/note does not say hello\"")
COUNT = (f"%expect stdout /^3$/\n### BEGIN SOLUTION\n{COUNT_SOLUTION}\n### END SOLUTION\n"
         "%%check --name three-lines\n[ \"$(wc -l < lines.txt)\" -eq 3 ] || echo \"FAIL: lines.txt has no 3 lines\"")
HIDDEN_CELL = "%%check --name middle-line --points 2\ngrep -qx b lines.txt || echo \"FAIL: the middle line is not b\""
QUESTION = f"**Question.** Why is a chroot no isolation?\n\n<!-- BEGIN SOLUTION -->\n{ANSWER}\n<!-- END SOLUTION -->"


def source_cells() -> list:
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    return [
        markdown("# Lab: files", id="intro"),
        code('%expect exit 0\ncd "$(mktemp -d)" && echo ready', id="setup"),
        markdown("**Task 1.** Make a directory `box` with a file `note` that says `hello`.", id="box-text"),
        code(BOX, id="box", metadata={"workshop": {"name": "box"}}),
        markdown("**Task 2.** Write three lines into `lines.txt` and count them.", id="count-text"),
        code(COUNT, id="count", metadata={"workshop": {"name": "count"}}),
        code(HIDDEN_CELL, id="count-hidden", metadata={"workshop": {"hidden": True}}),
        markdown(QUESTION, id="why", metadata={"workshop": {"name": "why", "manual_points": MANUAL_POINTS}}),
    ]


def make_source(path: Path, cells: list | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.metadata.workshop = {"target": "local"}
    nb.cells = source_cells() if cells is None else cells
    nbformat.write(nb, str(path))
    return path


def fill(student: Path, out: Path, answers: dict[str, str], edits: dict[str, tuple[str, str]] | None = None) -> Path:
    """A student's notebook: the placeholders of ``answers``' cells replaced, and text edited."""
    nb = json.loads(student.read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["id"] in answers:
            placeholder = "# YOUR CODE HERE" if cell["cell_type"] == "code" else "YOUR ANSWER HERE"
            assert placeholder in source
            source = source.replace(placeholder, answers[cell["id"]])
        for old, new in [(edits or {}).get(cell["id"], ("", ""))]:
            if old:
                assert old in source
                source = source.replace(old, new)
        cell["source"] = source
    out.write_text(json.dumps(nb), encoding="utf-8")
    return out
