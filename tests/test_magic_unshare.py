"""%%unshare: flags become one unshare command; a hostname is set inside, quoted as data."""

from __future__ import annotations

import shlex

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError


def test_flags_become_one_unshare_command():
    ctx, _ = fake_context()
    words = shlex.split(apply(ctx, "%%unshare -f -p -m --mount-proc", "ps"))
    assert words[0] == "unshare" and set(words[1].lstrip("-")) == {"f", "p", "m"}
    assert "--mount-proc" in words and "--" in words


def test_a_hostname_adds_the_uts_namespace_and_must_be_a_host_name():
    ctx, _ = fake_context()
    words = shlex.split(apply(ctx, "%%unshare --hostname box-1", "hostname"))
    assert words[1] == "-u" and words[-1].startswith("hostname box-1 ")
    with pytest.raises(MagicError, match="not a host name"):
        apply(ctx, "%%unshare --hostname 'x; rm -rf /'", "true")


def test_no_namespace_is_a_usage_error():
    ctx, _ = fake_context()
    with pytest.raises(MagicError, match="say which namespaces"):
        apply(ctx, "%%unshare", "true")
