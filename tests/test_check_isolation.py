"""Attacks on %%check verdicts from the student's own shell (issue: checks a
student can subvert).  Each cell below redefines what a check relies on; the
check must still fail when the state it checks is not there."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

ATTACKS = {
    "a function named test": "test() { return 0; }",
    "a function named [": "eval '[() { return 0; }'",
    "a function named grep": "grep() { return 0; }",
    "functions named builtin and command": "builtin() { return 0; }; command() { return 0; }",
    "an alias": "shopt -s expand_aliases; alias test=true",
    "a PATH with a fake test first": 'mkdir -p "$HOME/.fake"; printf "#!/bin/sh\\nexit 0\\n" > "$HOME/.fake/test"; '
                                     'chmod +x "$HOME/.fake/test"; export PATH="$HOME/.fake:$PATH"',
    "shell options": "set -o noglob; shopt -s nullglob; set -o noexec 2>/dev/null || true",
    "a DEBUG trap that skips commands": "shopt -s extdebug; trap 'false' DEBUG",
    "a variable that steers bash": "export BASH_ENV=/dev/null; IFS=x",
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_redefinition_in_the_students_shell_cannot_pass_a_check(shared_kernel, attack):
    kernel = shared_kernel
    kernel.run(ATTACKS[attack])
    result = kernel.run("%%check --name must-fail\n"
                        "test -e /nonexistent/file && [ -e /nonexistent/file ] && "
                        "grep -q root /etc/passwd-nonexistent || echo 'FAIL: the file is missing'")
    checks = {c["name"]: c for c in result.record["checks"]}
    assert checks["must-fail"]["passed"] is False, (attack, checks["must-fail"])
    assert "the file is missing" in checks["must-fail"]["message"]
    # and a true statement still passes: the clean shell works
    good = kernel.run("%%check --name must-pass\ntest -r /etc/passwd && grep -q root /etc/passwd")
    assert good.record["checks"][0]["passed"] is True, (attack, good.record["checks"])
    kernel.run("trap - DEBUG; shopt -u extdebug; unset -f test grep builtin command '[' 2>/dev/null; "
               "unalias -a; set +o noglob +o noexec; shopt -u nullglob; IFS=$' \\t\\n'; unset BASH_ENV")


def test_checks_see_the_students_variables_and_directory(shared_kernel, tmp_path):
    kernel = shared_kernel
    kernel.run(f"cd {tmp_path} && mkdir -p made && host_before=$(hostname) && export ROOTFS=$PWD/made")
    result = kernel.run('%%check --name sees-state\n[ "$(hostname)" = "$host_before" ] && [ -d "$ROOTFS" ] '
                        f'&& [ "$PWD" = {tmp_path} ] && [ -d made ] || echo "FAIL: $PWD $ROOTFS $host_before"')
    assert result.record["checks"][0]["passed"] is True, result.record["checks"]
    kernel.run("cd /")


def test_a_check_is_stopped_by_an_interrupt_and_says_so(shared_kernel):
    kernel = shared_kernel
    timer = threading.Timer(1.5, kernel.interrupt)
    timer.start()
    started = time.monotonic()
    result = kernel.run("true\n%%check --name slow\nsleep 1000 # ws-slow-check-marker")
    assert time.monotonic() - started < 20
    assert result.record["interrupted"] is True
    assert result.record["checks"][0]["passed"] is False
    assert "interrupted" in result.record["checks"][0]["message"]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", "sleep 1000 # [w]s-slow-check-marker"], capture_output=True, text=True).stdout
    assert left.strip() == "", f"the check's processes outlived the interrupt: {left}"
    assert kernel.run("echo alive").stdout == "alive\n"
