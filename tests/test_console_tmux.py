"""The kernel in `jupyter console`, typed into as a student does, in a real
terminal (tmux): a cell magic's body ends at one empty line, and `exit` says
once that the shell ended."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


class Terminal:
    """`jupyter console` with the Workshop kernel in a detached tmux session."""

    def __init__(self, name: str):
        if shutil.which("tmux") is None:
            pytest.fail("tmux is missing: run scripts/setup --test (it installs the tmux package)")
        self.name = name
        command = f"{sys.executable} -m jupyter_console --kernel workshop --ZMQTerminalInteractiveShell.banner=''"
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "50", command],
                       check=True, env=dict(os.environ, TERM="xterm"))
        self.wait_for("In [1]:", 120)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-200", "-t", self.name],
                              capture_output=True, text=True).stdout

    def type(self, *keys: str) -> None:
        for key in keys:
            if key == "Enter":
                subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)
            else:
                subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", key], check=True)
            time.sleep(0.3)  # as a person types: the console asks the kernel after each Enter

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def console(installed_kernelspec):
    terminal = Terminal(f"ws-console-{os.getpid()}")
    yield terminal
    terminal.close()


def test_a_cell_magic_runs_after_one_empty_line(console):
    console.type("%%unshare --uts", "Enter", "hostname in-a-box; hostname", "Enter", "Enter")
    screen = console.wait_for("In [2]:")
    assert "in-a-box" in screen, screen
    assert screen.count("...:") == 2, screen  # two continuation lines: the body and the empty line


def test_exit_says_once_that_the_shell_ended_and_the_next_cell_works(console):
    console.type("exit", "Enter")
    console.wait_for("In [2]:")
    console.type("echo still-here", "Enter")
    screen = console.wait_for("In [3]:")
    assert "still-here" in screen
    assert screen.count("the next cell starts a new shell") == 1, screen
    assert "started a new shell" not in screen, screen
