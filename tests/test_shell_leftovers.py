"""shell/leftovers.py: what a dead session left is found (a dry run, with a real sh)."""

from __future__ import annotations

import subprocess

from workshop.shell.leftovers import STATE_PREFIX, parse_sweep, sweep_script


def test_a_session_whose_shell_is_gone_is_reported(tmp_path):
    dead = tmp_path / f"{STATE_PREFIX}deadbeef"
    dead.mkdir()
    # pid 999999999 never runs: the owner is gone
    (dead / "owner").write_text("999999999 1 not-this-boot\n")
    (tmp_path / f"{STATE_PREFIX}nofile").mkdir()  # no owner file: not a session's
    out = subprocess.run(["sh", "-c", sweep_script(str(tmp_path), dry_run=True)], capture_output=True, text=True)
    found = parse_sweep(out.stdout)
    assert list(found) == ["deadbeef"], out
    assert dead.exists()  # a dry run removes nothing


def test_parse_sweep_groups_lines_by_session():
    assert parse_sweep("a\tmount /x\nb\tcgroup y\na\tdir\nnoise\n") == {"a": ["mount /x", "dir"], "b": ["cgroup y"]}
