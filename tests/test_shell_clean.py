"""shell/clean.py: a check runs in a clean shell with the student's variables as data (real bash)."""

from __future__ import annotations

import subprocess

from workshop.shell.clean import check_command, parse_variables


def test_variables_are_parsed_and_dangerous_ones_refused():
    dump = "\0".join(["greeting=hello world", "PATH=/evil", "LD_PRELOAD=/x.so", "BASH_ENV=/x", "n=1", "bad name=x"])
    assert parse_variables(dump) == {"greeting": "hello world", "n": "1"}


def test_the_clean_shell_sees_variables_as_data_and_none_of_the_environment(tmp_path):
    variables = {"greeting": "it's $(touch pwned)", "n": "3"}
    command, program = check_command('printf "%s|%s|%s" "$greeting" "$n" "${SECRET-unset}"', variables,
                                     None, "ws-check-test")
    result = subprocess.run(["sh", "-c", command], input=program, capture_output=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "SECRET": "kernel's"})
    assert result.stdout.decode() == "it's $(touch pwned)|3|unset"
    assert not (tmp_path / "pwned").exists()
