"""%%file PATH: the body written byte for byte with printf (real sh reads the code back)."""

from __future__ import annotations

import subprocess

from fake_context import apply, fake_context


def test_the_body_is_written_exactly_with_its_mode(tmp_path):
    ctx, printed = fake_context()
    body = "line 1\n$HOME `id` 'quoted'\nno newline at the end"
    target = tmp_path / "out file.sh"
    code = apply(ctx, f"%%file '{target}' --mode 750", body)
    subprocess.run(["sh", "-c", code], check=True)
    assert target.read_text() == body and oct(target.stat().st_mode & 0o777) == "0o750"
    ctx.outcome = None
    ctx.run_after_hooks(lambda exc: None)
    assert printed == []  # nothing said until the code ran
