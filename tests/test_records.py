"""Folding of overwritten characters, as frontends save stream outputs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workshop.records import StreamDigest, fold_carriage_returns, fold_overwrites, sha256_text


def _jupyterlab_fix_carriage_return(text: str) -> str:
    """A literal port of JupyterLab's loop, the reference for the one-pass version."""
    text = re.sub(r"\r+\n", "\n", text)
    while re.search(r"\r[^$]", text, re.S):
        base = re.search(r"(?<![^\r\n])([^\r\n]*)\r+", text).group(1)
        insert = re.search(r"\r+([^\r\n]*)", text).group(1)
        insert = insert + base[len(insert) :]
        text = re.sub(r"\r+[^\r\n]*", "\r", text, count=1)
        text = re.sub(r"(?<![^\r\n])[^\r\n]*\r", lambda _m, new=insert: new, text, count=1)
    return text


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab$x\r\n", max_size=60))
def test_one_pass_folding_matches_the_frontend_loop(text):
    assert fold_carriage_returns(re.sub(r"\r+\n", "\n", text)) == _jupyterlab_fix_carriage_return(text)


def test_progress_lines_fold_to_their_last_state():
    assert fold_overwrites("start\n" + "".join(f"\r{i}%" for i in range(200_000)) + "\ndone\n") == (
        "start\n199999%\ndone\n"
    )
    assert fold_overwrites("abc\rX\n") == "Xbc\n"
    assert fold_overwrites("ab\bc") == "ac"


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.text(alphabet="ab$\r\n\x08\u00e9", max_size=8), max_size=12))
def test_streamed_digests_equal_digests_of_the_whole_text(chunks):
    """The kernel digests output as it streams, keeping only the text from the line
    of the first overwrite on; the result must equal digesting the whole text."""
    digest = StreamDigest()
    for chunk in chunks:
        digest.add_shown(chunk)
    text = "".join(chunks)
    assert digest.hexdigest() == sha256_text(text)
    folded = sha256_text(fold_overwrites(text)) if ("\r" in text or "\x08" in text) else None
    assert digest.normalized_hexdigest() == folded


def test_a_digest_keeps_no_text_unless_asked():
    quiet = StreamDigest()
    quiet.add_shown("x" * 1000 + "\n")
    with pytest.raises(RuntimeError, match="not kept"):
        quiet.text  # noqa: B018 - reading it is the test
    kept = StreamDigest(keep_text=True)
    kept.add_shown("a\n")
    kept.add_shown("b")
    assert kept.text == "a\nb"
