"""%timeout N|off: sets the session's timeout; alone, says it."""

from __future__ import annotations

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError


def test_timeout_sets_shows_and_turns_off():
    ctx, printed = fake_context()
    apply(ctx, "%timeout 2.5")
    assert ctx.session.timeout == 2.5
    apply(ctx, "%timeout")
    assert printed[-1] == ("stdout", "timeout: 2.5 s\n")
    apply(ctx, "%timeout off")
    assert ctx.session.timeout is None
    with pytest.raises(MagicError):
        apply(ctx, "%timeout soon")
