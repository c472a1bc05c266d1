"""%%overlay and %overlay: arguments checked, snapshots listed and removed through the target's shell."""

from __future__ import annotations

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError


def test_a_snapshot_name_must_be_safe():
    ctx, _ = fake_context()
    with pytest.raises(MagicError):
        apply(ctx, "%%overlay rootfs --name '../escape'", "true")


def test_removing_a_snapshot_that_is_not_there_says_so():
    ctx, _ = fake_context()
    with pytest.raises(MagicError, match="no snapshot named nothing-here"):
        apply(ctx, "%overlay rm nothing-here")
