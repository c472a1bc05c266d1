"""What is kept of a stream past the shown limit: a bounded tail, and a saved file
that stops at its cap (a runaway cell must not fill the disk)."""

from __future__ import annotations

from workshop import cut_output
from workshop.cut_output import SavedStream, Tail


def test_the_tail_keeps_the_last_characters_and_counts_the_rest():
    tail = Tail(10)
    for part in ("abc", "defgh", "ijklmnop", "q"):
        tail.add(part)
    assert (tail.text(), tail.dropped) == ("hijklmnopq", 7)


def test_the_saved_file_stops_at_its_cap_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(cut_output, "SAVED_MAX", 10)
    saved = SavedStream(tmp_path / "out" / "cell.stdout.txt")
    for part in ("abcdef", "ghijklmn", "more"):
        saved.write(part)
    saved.close()
    assert saved.full
    assert saved.path.read_text() == "abcdefghij\n[workshop: saved no further: 0 MiB is the most]\n"
