"""%expect: a declaration the session evaluates after the cell."""

from __future__ import annotations

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError


def test_expectations_are_collected_and_an_exit_status_is_expected():
    ctx, _ = fake_context()
    apply(ctx, "%expect exit 2")
    apply(ctx, "%expect stdout-contains it's done")
    assert [e.kind for e in ctx.expectations] == ["exit", "contains"]
    assert ctx.record.expected_exit == 2 and ctx.record.stdout.keep_text


def test_no_spec_is_a_usage_error():
    ctx, _ = fake_context()
    with pytest.raises(MagicError, match="usage"):
        apply(ctx, "%expect")
