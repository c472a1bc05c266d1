"""%%cgroup: sizes and limits are parsed before anything is made."""

from __future__ import annotations

import argparse

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError
from workshop.magics.cgroup import size


def test_sizes_take_units():
    assert size("100M") == 100 * 2**20 and size("1g") == 2**30 and size("65536") == 65536
    with pytest.raises(argparse.ArgumentTypeError, match="100M"):
        size("lots")


def test_a_bad_limit_or_name_is_a_usage_error_before_any_shell_code():
    ctx, _ = fake_context()
    for line in ("%%cgroup --memory lots", "%%cgroup --pids -1", "%%cgroup --name '../x'"):
        with pytest.raises(MagicError):
            apply(ctx, line, "true")
    assert ctx.session.hidden == []
