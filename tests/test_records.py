"""Folding of overwritten characters, as frontends save stream outputs."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from workshop.records import fold_carriage_returns, fold_overwrites


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
