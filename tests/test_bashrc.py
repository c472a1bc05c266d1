"""The user's ~/.bashrc: not read unless asked (WORKSHOP_BASHRC=1), never in a
grading rerun; through a real kernel, with a .bashrc in a temporary HOME."""

from __future__ import annotations

import pytest

BASHRC = """\
case $- in *i*) ;; *) return;; esac
alias ll='echo ll-from-bashrc'
greet() { echo "hello from bashrc"; }
PS1='\\u@\\h:\\w\\$ '
PROMPT_COMMAND='echo prompt-command-ran >&2'
echo "chatter from bashrc"
"""


@pytest.fixture
def home(tmp_path):
    (tmp_path / ".bashrc").write_text(BASHRC)
    return tmp_path


def test_by_default_the_bashrc_is_not_read(start_kernel, home):
    kernel = start_kernel("local", HOME=str(home))
    result = kernel.run("type -t ll greet; echo end")
    assert result.stdout == "end\n"


def test_asked_for_its_aliases_and_functions_are_there(start_kernel, home):
    kernel = start_kernel("local", HOME=str(home), WORKSHOP_BASHRC="1")
    result = kernel.run("ll\ngreet")
    assert result.status == "ok"
    assert result.stdout == "ll-from-bashrc\nhello from bashrc\n"
    # what it printed, its prompt and its PROMPT_COMMAND stay out of the cells
    assert result.stderr == ""
    again = kernel.run("echo next")
    assert again.stdout == "next\n" and again.stderr == ""
    # a shell started anew (after `exit`) reads it again
    kernel.run("exit")
    assert kernel.run("ll").stdout == "ll-from-bashrc\n"


def test_a_grading_rerun_never_reads_it(start_kernel, home):
    kernel = start_kernel("local", HOME=str(home), WORKSHOP_BASHRC="1", WORKSHOP_TARGET_LOCKED="1")
    result = kernel.run("type -t ll greet; echo end")
    assert result.stdout == "end\n"


def test_a_broken_bashrc_does_not_stop_the_shell(start_kernel, tmp_path):
    (tmp_path / ".bashrc").write_text("alias ok='echo ok'\nfi oops (\nread -r line\n")
    kernel = start_kernel("local", HOME=str(tmp_path), WORKSHOP_BASHRC="1")
    result = kernel.run("echo fine")
    assert result.status == "ok" and result.stdout == "fine\n"
