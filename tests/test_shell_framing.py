"""shell/framing.py: quoting a cell for bash on one line, and markers told apart from output (real bash)."""

from __future__ import annotations

import subprocess

from workshop.shell.framing import Marker, MarkerScanner, new_nonce, quote_bash_line

AWKWARD = ["plain", "it's", "a\nb\n", "tab\there", "back\\slash", "$HOME `id` $(id)", "\x01\x7f", "ünïcødé ✔", ""]


def test_a_quoted_cell_is_one_line_that_bash_reads_back_exactly():
    for text in AWKWARD:
        word = quote_bash_line(text)
        assert "\n" not in word
        back = subprocess.run(["bash", "--norc", "-c", f"printf %s {word}"], capture_output=True, check=True)
        assert back.stdout.decode() == text


def test_markers_are_split_from_output_even_across_reads():
    nonce = new_nonce()
    stream = b"before\0WS" + nonce.encode() + b":end:0:7\0after"
    scanner = MarkerScanner(nonce)
    pieces = []
    for i in range(0, len(stream), 3):  # three bytes at a time: a marker arrives in pieces
        pieces += scanner.feed(stream[i:i + 3])
    pieces.append(scanner.flush())
    data = b"".join(p for p in pieces if isinstance(p, bytes))
    markers = [p for p in pieces if isinstance(p, Marker)]
    assert data == b"beforeafter"
    assert [m.kind for m in markers] == ["end"] and markers[0].fields == ["0", "7"]


def test_a_marker_with_another_nonce_is_plain_output():
    scanner = MarkerScanner(new_nonce())
    forged = b"\0WS" + new_nonce().encode() + b":end:0\0"
    out = scanner.feed(forged) + [scanner.flush()]
    assert b"".join(p for p in out if isinstance(p, bytes)) == forged
