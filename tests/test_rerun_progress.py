"""What a grader sees while reruns go on: a live bar on a terminal (done, running,
failed, elapsed, time left), and nothing of it in a CI log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
from harness import clean_env
from test_grading import make_notebook
from test_rerun_isolation import HELLO

pytestmark = pytest.mark.slow

LOCAL = ["--target", "local", "--run-student-code-on-this-machine"]
STYLE = re.compile(r"\x1b\[[0-9;]*m")  # colours: part of a line
MOVES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")  # the cursor going back: a new frame


def lab(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    ref = make_notebook(tmp_path / "reference.ipynb", HELLO)
    make_notebook(subs / "alice.ipynb", HELLO)
    make_notebook(subs / "bob.ipynb", HELLO)
    make_notebook(subs / "sleeper.ipynb", {"nap": "sleep 86400", **HELLO})  # stopped by --timeout: failed
    return ref, subs


def grade_args(ref, subs) -> list[str]:
    return [sys.executable, "-m", "workshop", "grade", str(ref), str(subs), "--rerun", *LOCAL, "--timeout", "2",
            "-q"]


def on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``args`` with stderr on a pseudo-terminal 160 columns wide; its exit status and what it drew."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary, env=env)
    os.close(secondary)
    drawn = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main)
    return proc.wait(timeout=300), drawn.decode("utf-8", "replace")


def terminal_env(**extra: str) -> dict[str, str]:
    env = clean_env(TERM="xterm-256color", **extra)
    for name in ("COLUMNS", "LINES", "CI", "NO_COLOR", "TERM_PROGRAM"):
        if name not in extra:
            env.pop(name, None)
    return env


def test_a_terminal_shows_done_running_failed_and_time(tmp_path, installed_kernelspec):
    ref, subs = lab(tmp_path)
    status, drawn = on_a_terminal(grade_args(ref, subs), terminal_env())
    assert status == 0, drawn
    seen = MOVES.sub("\n", STYLE.sub("", drawn))  # each frame the bar drew, as a line
    assert "\x1b[" in drawn  # drawn live, in place
    assert re.search(r"re-running .*0/3 done · 1 running · 0 failed · \d+:\d\d:\d\d elapsed, about", seen), seen
    last = [line for line in seen.splitlines() if "re-running" in line][-1]
    assert re.search(r"3/3 done · 0 running · 1 failed · \d+:\d\d:\d\d elapsed, about 0:00:00 left", last), last


def test_no_bar_when_not_on_a_terminal_or_in_ci(tmp_path, installed_kernelspec):
    ref, subs = lab(tmp_path)
    done = subprocess.run(grade_args(ref, subs), capture_output=True, text=True, timeout=300, env=terminal_env())
    assert done.returncode == 0, done.stderr
    assert "re-running" not in done.stderr and "done ·" not in done.stderr and "\x1b[" not in done.stderr
    status, drawn = on_a_terminal(grade_args(ref, subs), terminal_env(CI="true"))  # a CI job with a terminal
    assert status == 0, drawn
    assert "re-running" not in drawn and "done ·" not in drawn


def test_a_long_batch_off_a_terminal_says_it_is_alive_in_plain_lines():
    import io

    from rich.console import Console

    from workshop.progress import RerunProgress

    log = io.StringIO()
    console = Console(file=log, force_terminal=False, width=200)
    with RerunProgress(console, total=4, slots=2, done=1, env={}, plain_every=0) as progress:
        progress.finished()
        progress.finished(failed=True)
        progress.finished()  # the last: the report follows, no line needed
    lines = [re.sub(r"\d+m\d\ds elapsed", "TIME elapsed", line) for line in log.getvalue().splitlines()]
    assert lines == [
        "1 of 4 submissions need no rerun (stored already by an earlier run, or unreadable)",
        "re-running: 2/4 done, 0 failed, TIME elapsed",
        "re-running: 3/4 done, 1 failed, TIME elapsed",
    ]
