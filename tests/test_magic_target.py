"""%target [SPEC]: shows where cells run, or switches with the session's own settings."""

from __future__ import annotations

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError, TargetError


def test_target_shows_and_switches():
    ctx, printed = fake_context()
    apply(ctx, "%target")
    assert printed[0] == ("stdout", "target: local (default)\n")
    apply(ctx, "%target local")
    assert ctx.session.switched == [("local", "%target")]


def test_an_unknown_kind_is_refused():
    ctx, _ = fake_context()
    with pytest.raises((MagicError, TargetError), match="unknown target"):
        apply(ctx, "%target nowhere:x")
