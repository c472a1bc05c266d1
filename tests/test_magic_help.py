"""%help and %lsmagic: text about the magics, nothing run."""

from __future__ import annotations

from fake_context import apply, fake_context


def test_help_lists_and_explains():
    ctx, printed = fake_context()
    apply(ctx, "%help")
    apply(ctx, "%help chroot")
    apply(ctx, "%lsmagic")
    text = "".join(t for _, t in printed)
    assert "%%chroot" in text and "%timeout" in text
    assert ctx.session.hidden == []
