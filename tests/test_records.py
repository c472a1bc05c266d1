"""Folding of overwritten characters, as frontends save stream outputs."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workshop.records import (
    PREFIX_FIRST,
    SCHEMA_KEYS,
    Record,
    StreamDigest,
    _stream_dict,
    classify_stream,
    classify_streams,
    fold_carriage_returns,
    fold_overwrites,
    sha256_text,
)


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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ---- prefix digests: telling a client's truncation from an edit ------------------
def _recorded(text: str, chunks: int = 7) -> dict:
    """The stream part of a record for ``text``, streamed in uneven chunks."""
    digest = StreamDigest()
    step = max(len(text) // chunks, 1)
    for start in range(0, len(text), step):
        digest.add_shown(text[start : start + step])
    return _stream_dict(digest)


BIG = "".join(f"line {i:07d} \u00e9\u6f22 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" for i in range(20_000))


def test_prefix_digests_sit_at_doubling_offsets_and_cover_the_first_characters():
    stream = _recorded(BIG)
    assert stream["chars"] == len(BIG)
    offsets = sorted(int(n) for n in stream["prefix_digests"])
    assert offsets == [PREFIX_FIRST * 2**k for k in range(len(offsets))]
    assert offsets[-1] <= len(BIG) < offsets[-1] * 2
    for n in offsets:
        assert stream["prefix_digests"][str(n)] == sha256_text(BIG[:n])
    assert "prefix_digests" not in _recorded("short\n")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=5 * PREFIX_FIRST), st.integers(min_value=1, max_value=40))
def test_prefix_digests_do_not_depend_on_how_the_output_was_chunked(length, chunks):
    text = ("ab\n\u00e9" * length)[:length]
    stream = _recorded(text, chunks)
    assert stream["digest"] == sha256_text(text)
    assert {int(n) for n in stream.get("prefix_digests", {})} == {
        PREFIX_FIRST * 2**k for k in range(8) if PREFIX_FIRST * 2**k <= length}
    for n, digest in stream.get("prefix_digests", {}).items():
        assert digest == sha256_text(text[: int(n)])


def test_saved_text_is_exact_a_verified_prefix_or_edited():
    stream = _recorded(BIG)
    assert classify_stream(BIG, stream).kind == "exact"
    cut = classify_stream(BIG[:300_000], stream)
    assert (cut.kind, cut.kept, cut.verified, cut.shown) == ("truncated", 300_000, 262_144, len(BIG))
    assert "kept 300000 of the" in cut.describe("stdout")
    # an edit inside the verified prefix, or in a text of full length, is an edit
    assert classify_stream(BIG[:100] + "X" + BIG[101:300_000], stream).kind == "edited"
    assert classify_stream(BIG[:-2] + "X\n", stream).kind == "edited"
    assert classify_stream(BIG + "more", stream).kind == "edited"
    # too short to reach a prefix digest: nothing vouches for it
    assert classify_stream(BIG[:1000], stream).kind == "edited"
    # records without prefix digests (older kernels) and malformed ones
    old = {k: v for k, v in stream.items() if k != "prefix_digests"}
    assert classify_stream(BIG[:300_000], old).kind == "edited"
    assert classify_stream(BIG[:300_000], None).kind == "edited"
    assert classify_stream(BIG[:300_000], {**stream, "chars": True}).kind == "edited"


SERVER_NOTICE = (
    "IOPub data rate exceeded.\nThe Jupyter server will temporarily stop sending output\n"
    "to the client in order to avoid crashing it.\nTo change this limit, set the config variable\n"
    "`--ServerApp.iopub_data_rate_limit`.\n\nCurrent values:\n"
    "ServerApp.iopub_data_rate_limit=1000000.0 (bytes/sec)\nServerApp.rate_limit_window=3.0 (secs)\n\n"
)


def test_output_the_server_dropped_is_not_an_edit():
    """jupyter_server drops whole messages (gaps, not only a cut tail) and says
    so in stderr: with its notice, the longest verified prefix counts."""
    record = {"stdout": _recorded(BIG), "stderr": _recorded("warn\n")}
    gaps = BIG[:200_000] + BIG[400_000:600_000]
    verdicts = classify_streams(record, gaps, "warn\n" + SERVER_NOTICE)
    assert verdicts["stderr"].kind == "exact"
    assert (verdicts["stdout"].kind, verdicts["stdout"].verified) == ("truncated", 131_072)
    # without the server's word, gaps are an edit
    assert classify_streams(record, gaps, "warn\n")["stdout"].kind == "edited"
    # and with it, stderr that differs otherwise is still an edit
    assert classify_streams(record, BIG, "worn\n" + SERVER_NOTICE)["stderr"].kind == "edited"


def _record(**extra) -> Record:
    return Record(cell_id="c1", execution_count=3, session="s", target={"kind": "local"},
                  started=datetime.now(timezone.utc), source="false", exit_status=1, extra=extra)


def test_what_a_magic_adds_cannot_replace_what_the_record_says_of_the_run():
    record = _record(overlay={"upper": "/tmp/u"})
    record.expected_exit, record.notices = 1, ["a notice"]
    data = record.as_dict()
    assert data["overlay"] == {"upper": "/tmp/u"} and data["status"] == "ok"
    assert SCHEMA_KEYS == set(data) - {"overlay"}  # every key the schema writes is protected
    with pytest.raises(KeyError, match="'exit_status' is a key of the record's schema"):
        record.extra["exit_status"] = 0
    with pytest.raises(KeyError, match="'status' is a key of the record's schema"):
        record.extra.update(status="ok")
    with pytest.raises(KeyError, match="'checks' is a key"):
        _record(checks=[])
    assert record.as_dict()["exit_status"] == 1
