"""%submit: the self-check, then the saved notebook filed by a real collector (in a thread, on a
course in a temporary folder) under the user running the test, with the server's time."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from assignment_lab import make_source
from fake_context import FakeSession, apply, fake_context

from workshop.assign import release
from workshop.errors import MagicError
from workshop.exchange import collector
from workshop.exchange.course import Course
from workshop.exchange.course import release as publish


@dataclass
class Saved:
    path: str


@pytest.fixture
def handin_course(tmp_path, monkeypatch):
    release([make_source(tmp_path / "lab.ipynb")], tmp_path / "out", verify_reference=False)
    course = Course(tmp_path / "course")
    course.init()
    publish(course, tmp_path / "out" / "student" / "lab.ipynb", None)
    monkeypatch.setenv("WORKSHOP_COURSE_DIR", str(course.root))
    server = collector.Collector(course)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield course, tmp_path / "out" / "student" / "lab.ipynb"
    server.shutdown()
    server.server_close()


def test_the_notebook_this_kernel_runs_for_is_self_checked_and_filed(handin_course):
    course, notebook = handin_course
    session = FakeSession()
    session.notebook = Saved(str(notebook))
    ctx, printed = fake_context(session)
    apply(ctx, "%submit")
    text = "".join(t for _, t in printed)
    assert "self-check: 0 of 6 points from the visible checks; not passing yet:" in text
    assert "handed in lab as " in text and "hand-in number 1" in text
    assert "save it (Ctrl+S) and run %submit again" in text
    filed = list((course.submissions / "lab").glob("*/*.ipynb"))
    assert len(filed) == 1 and filed[0].read_bytes() == notebook.read_bytes()
    receipt = json.loads(filed[0].with_suffix(".json").read_text())
    assert receipt["late"] is False and receipt["number"] == 1
    apply(ctx, f"%submit '{notebook}'")  # again: a second hand-in, the first one kept
    assert len(list((course.submissions / "lab").glob("*/*.ipynb"))) == 2


def test_without_a_known_notebook_or_collector_one_sentence_says_what_to_do(handin_course, tmp_path):
    course, notebook = handin_course
    ctx, _ = fake_context()
    with pytest.raises(MagicError, match=r"^this kernel does not know which notebook it runs for; name it: "
                                         r"%submit NOTEBOOK.ipynb$"):
        apply(ctx, "%submit")
    with pytest.raises(MagicError, match="no such notebook; save it first"):
        apply(ctx, f"%submit {tmp_path / 'nothing.ipynb'}")
    other = Course(tmp_path / "elsewhere")
    other.init()
    with pytest.raises(MagicError, match=r"the course's collector is not running .* workshop exchange start\)?$"):
        apply(ctx, f"%submit {notebook} --course {other.root}")
    with pytest.raises(MagicError, match=r"^no assignment other is released in the course at .* \(released: lab\)$"):
        apply(ctx, f"%submit {notebook} --assignment other")


def test_help_names_the_magic():
    ctx, printed = fake_context()
    apply(ctx, "%help submit")
    assert "%submit [NOTEBOOK]" in "".join(t for _, t in printed)


def test_a_reference_is_never_released(handin_course, tmp_path):
    course, _ = handin_course
    from workshop.errors import ExchangeError

    with pytest.raises(ExchangeError, match=r"looks like a reference, not a student copy \(cell \d+ holds a "):
        publish(course, tmp_path / "out" / "reference" / "lab.ipynb", None)
    assert Path(course.released / "lab" / "lab.ipynb").exists()


@pytest.mark.slow
def test_in_a_kernel_it_hands_in_the_notebook_the_server_named(handin_course, start_kernel):
    """A real kernel, started as a Jupyter server starts it (JPY_SESSION_NAME names the notebook)."""
    course, notebook = handin_course
    kernel = start_kernel("local", JPY_SESSION_NAME=str(notebook), WORKSHOP_COURSE_DIR=str(course.root))
    result = kernel.run("%submit")
    assert result.status == "ok", result.stderr
    assert "self-check: 0 of 6 points" in result.stdout and "hand-in number 1" in result.stdout
    stray = kernel.run(f"%submit --course {course.root / 'nowhere'}")
    assert stray.status == "error" and "the course's collector is not running" in str(stray.errors)


def test_one_user_holding_connections_open_is_told_to_wait(handin_course):
    """A few connections per user are served at once: idle ones of one student cannot fill the collector."""
    import socket

    from workshop.exchange.handin import request

    course, _ = handin_course
    idle = []
    for _ in range(collector.PER_USER):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(course.socket))
        idle.append(sock)
    try:
        import time

        time.sleep(0.3)  # the collector has taken them
        from workshop.errors import ExchangeError

        with pytest.raises(ExchangeError, match=r"^the collector is busy with other hand-ins \(or more of yours\); "
                                                r"try again in a minute$"):
            request(course, {"op": "hello"})
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert request(course, {"op": "hello"})["assignments"] == ["lab"]
