"""%cleanup: runs the session's cleanups (and its sweep), and says what it did."""

from __future__ import annotations

from fake_context import apply, fake_context


def test_cleanup_runs_every_registered_cleanup():
    ctx, printed = fake_context()
    ctx.register_cleanup("mount:/x", "umount /x")
    apply(ctx, "%cleanup")
    assert ctx.session.cleanups == {}
    assert printed
