"""shell/result.py: CommandResult, the one result of a command that ran."""

from __future__ import annotations

from workshop.shell.result import CommandResult


def test_ok_means_exit_zero_and_nothing_went_wrong():
    assert CommandResult(0).ok
    assert not CommandResult(1).ok
    assert not CommandResult(0, interrupted=True).ok
    assert not CommandResult(0, timed_out=True).ok
    assert not CommandResult(0, shell_ended="the shell exited").ok
    assert not CommandResult(0, framing="a forged end marker").ok


def test_output_and_problem_read_as_a_person_reads_them():
    assert CommandResult(0, stdout="a", stderr="b\n").output == "a\nb\n"
    assert CommandResult(0, stdout="a\n", stderr="b").output == "a\nb"
    assert CommandResult(0, stdout="only").output == "only"
    assert CommandResult(2, stderr="  no such file \n").problem() == "no such file"
    assert CommandResult(3).problem() == "exit status 3"
