"""%%check: a section the cell grammar takes apart; as a magic line among commands it is refused."""

from __future__ import annotations

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError


def test_check_run_as_a_cell_magic_is_a_misplaced_line():
    ctx, _ = fake_context()
    with pytest.raises(MagicError):
        apply(ctx, "%%check --points 2", "true")
