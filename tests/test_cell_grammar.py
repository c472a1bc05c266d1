"""One rule for where things go in a cell: declarations (%expect lines, %%check
sections) above or below the commands, %%check sections last."""

from __future__ import annotations

import pytest

from workshop.cell import parse_cell
from workshop.checks import CheckSyntaxError, cell_checks
from workshop.errors import MagicError

KNOWN = {"expect", "timeout", "target", "rootfs"}


def expects(cell) -> list[str]:
    return [" ".join(m.args) for m in cell.line_magics if m.name == "expect"]


def test_expect_may_stand_above_or_below_the_commands_with_the_same_meaning():
    above = parse_cell("%expect exit 0\n%expect stdout /hi/\necho hi\n%%check --name x\ntrue", KNOWN)
    below = parse_cell("echo hi\n%expect exit 0\n%expect stdout /hi/\n%%check --name x\ntrue", KNOWN)
    at_end = parse_cell("echo hi\n\n# what it must show\n%expect exit 0\n\n%expect stdout /hi/\n", KNOWN)
    for cell in (above, below, at_end):
        assert expects(cell) == ["exit 0", "stdout /hi/"]
        assert cell.body.strip().splitlines()[0] == "echo hi"
    assert [c.line for c in below.checks] == ["%%check --name x"]
    both = parse_cell("%expect exit 0\necho hi\n%expect stdout /hi/", KNOWN)
    assert expects(both) == ["exit 0", "stdout /hi/"]


def test_declarations_below_keep_the_body_and_its_line_numbers():
    cell = parse_cell("%timeout 5\n%%chroot rootfs\nls\nfalse\n%expect exit 1", KNOWN)
    assert [m.name for m in cell.line_magics] == ["timeout", "expect"]
    assert [m.name for m in cell.cell_magics] == ["chroot"]
    assert cell.body == "ls\nfalse"


def test_the_grader_reads_expectations_below_the_commands():
    found = cell_checks("echo hi\n%expect stdout /hi/\n%%check --name made\ntest -n x")
    assert [e.spec for e in found.expectations] == ["stdout /hi/"]
    assert [s.name for s in found.scripts] == ["made"]


@pytest.mark.parametrize("source, message", [
    ("echo a\n%expect exit 0\necho b", "line 2: %expect stands between shell lines"),
    ("echo a\n%timeout 3", "line 2: %timeout comes after shell code; move it to the top of the cell"),
    ("echo a\n%timeout 3\necho b\n%expect exit 0", "line 2: %timeout comes after shell code"),
    ("echo a\n%%chroot rootfs\nls", "line 2: %%chroot comes after shell code"),
])
def test_what_can_be_read_two_ways_stays_an_error_of_one_sentence(source, message):
    with pytest.raises(MagicError) as caught:
        parse_cell(source, KNOWN)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_an_expect_inside_a_check_script_is_an_error():
    with pytest.raises(CheckSyntaxError, match="an %expect line inside a check script"):
        cell_checks("echo a\n%%check --name x\ntrue\n%expect exit 0")


def test_a_kernel_takes_expectations_below_the_commands(start_kernel):
    kernel = start_kernel("local")
    result = kernel.run("echo hello\n%expect stdout /^hello$/\n%expect exit 0\n%%check --name said\ntrue")
    assert result.status == "ok" and result.stdout == "hello\n"
    assert [(c["name"], c["passed"]) for c in result.record["checks"]] == [
        ("stdout /^hello$/", True), ("exit 0", True), ("said", True)]
    failed = kernel.run("echo bye\n%expect stdout /^hello$/")
    assert [c["passed"] for c in failed.record["checks"]] == [False]
    wrong = kernel.run("echo a\n%expect exit 0\necho b")
    assert wrong.status == "error" and not wrong.stdout  # nothing of the cell ran
    assert "%expect stands between shell lines" in wrong.errors[0]["evalue"]
