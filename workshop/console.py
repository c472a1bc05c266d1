"""What a console asks a kernel beyond running code: is this cell complete yet?

`jupyter console` sends every line typed to ``is_complete`` and runs the cell
once it says "complete".  A cell made only of declarations (``%expect ...``, ``%%chroot rootfs``,
``%%check``) is a start, not a cell: the console waits; a line magic that acts
(``%lsmagic``, ``%target ...``) runs at once.
A cell with a cell magic (``%%...``) goes on until an empty line, as in
IPython.  Shell code is asked of the local bash (``bash -n``): an open
``if``/``for``/``while``/``case``/``{``, quote or here-document waits, with an
indent for blocks.
"""

from __future__ import annotations

import re
import subprocess

from .cell import is_check_line, split_cell, split_checks
from .errors import MagicError

INDENT = "  "
# Line magics that say something about the code to come rather than act.
DECLARATIONS = frozenset({"expect"})
_OPENS_BLOCK = re.compile(r"(\b(then|do|else)|\{|\bin)\s*$")


def is_complete(code: str) -> dict:
    """The Jupyter ``is_complete_reply`` content for ``code``."""
    if not code.strip():
        return {"status": "complete"}
    try:
        body, checks = split_checks(code)
        line_magics, cell_magics, shell = split_cell(body, strict=False)
    except MagicError:
        return {"status": "invalid"}
    last_line = code.rstrip("\n").split("\n")[-1]
    acts = any(m.name not in DECLARATIONS for m in line_magics) and not cell_magics
    if not acts and not shell.strip() and not any(c.script.strip() for c in checks):
        return {"status": "incomplete", "indent": ""}  # declarations so far, nothing to run yet
    if cell_magics and code.split("\n")[-1].strip():
        # a cell magic's body ends with an empty line: Enter on it (the console asks
        # with the text so far, whose last line is then empty)
        return {"status": "incomplete", "indent": ""}
    scripts = [shell] + [c.script for c in checks]
    for script in scripts:
        verdict = _bash_verdict(script)
        if verdict != "complete":
            indent = INDENT if verdict == "incomplete" and _OPENS_BLOCK.search(last_line.strip()) else ""
            return {"status": verdict, "indent": indent} if verdict == "incomplete" else {"status": verdict}
    if is_check_line(last_line):
        return {"status": "incomplete", "indent": ""}
    return {"status": "complete"}


def _bash_verdict(code: str) -> str:
    if not code.strip():
        return "complete"
    if code.rstrip("\n").endswith("\\"):
        return "incomplete"
    try:
        done = subprocess.run(["bash", "-n"], input=code.encode(), capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    message = done.stderr.decode(errors="replace")
    # bash only warns about an unfinished heredoc; a console should wait for more.
    if "unexpected end of file" in message or "unexpected EOF" in message or "here-document" in message:
        return "incomplete"
    return "complete" if done.returncode == 0 else "invalid"
