"""Fuzzing the framing: no cell content may desynchronise the shell session."""

from __future__ import annotations

import shlex
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workshop.shell.channels import HERE, LocalChannel
from workshop.shell.framing import MarkerScanner, quote_bash_line
from workshop.shell.persistent import PersistentShell

FRAGMENTS = [
    "echo a", "echo b >&2", "'", '"', "`", "{", "}", "(", ")", "[", "]", "$(", "${", "\\", "\n", ";",
    "|", "&&", "||", "<<EOF\n", "EOF\n", "<<'X'\n", "X\n", "#", "!", "\r", "\t", "printf '\\0\\377'",
    "exit", "exec", "true", "false", "cat", "read v", "done", "fi", "if", "then", "for i in 1; do",
    "case x in", "esac", "$'", "\\x00", "__ws_post 1", "printf '\\0WS'", "trap", "set -u", "unset PATH",
    "unset -f", "__ws_pre", "alias __ws_post=: eval=:", "builtin",
]


def _session(flavour: str) -> PersistentShell:
    if flavour == "sh":
        env = {"PATH": _busybox_path()}
    else:
        env = None
    session = PersistentShell(lambda command: LocalChannel(command, aside=HERE, env=env, cwd="/tmp"))
    session.start()
    return session


_BUSYBOX_DIR: list[str] = []


def _busybox_path() -> str:
    if not _BUSYBOX_DIR:
        import tempfile
        from pathlib import Path

        busybox = shutil.which("busybox")
        if busybox is None:
            pytest.fail("busybox is missing: apt-get install busybox-static")
        d = Path(tempfile.mkdtemp(prefix="ws-busybox-"))
        for applet in ("sh", "echo", "cat", "printf", "mkfifo", "rm", "mkdir", "chmod", "grep", "kill", "pgrep"):
            (d / applet).symlink_to(busybox)
        _BUSYBOX_DIR.append(str(d))
    return _BUSYBOX_DIR[0]


# Hypothesis counts pytest-timeout's failure as a failing example and goes on
# shrinking, so a hang would outlive the usual timeout: here the timeout ends
# the whole run instead, with every thread's stack.
pytestmark = [pytest.mark.timeout(600, method="thread"), pytest.mark.slow]


@pytest.fixture(scope="module", params=["bash", "sh"])
def session(request):
    s = _session(request.param)
    yield s
    s.close()


def _run(session: PersistentShell, code: str):
    out: list[bytes] = []
    err: list[bytes] = []
    outcome = session.run(code, lambda name, data: (out if name == "stdout" else err).append(data), timeout=20)
    return outcome, b"".join(out), b"".join(err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12).map(" ".join))
def test_no_cell_desynchronises_the_session(session, code):
    outcome, _, _ = _run(session, code)
    if outcome.shell_ended:
        session.start()  # first, so that one failing example does not fail the rest
    assert not outcome.timed_out, f"cell hung: {code!r}"
    sentinel, out, _ = _run(session, "echo sentinel")
    assert sentinel.status == 0
    assert out == b"sentinel\n", f"after {code!r}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=200))
def test_any_text_survives_quoting_into_the_shell(session, text):
    outcome, out, err = _run(session, f"printf '%s' {shlex.quote(text)}")
    assert outcome.status == 0, err
    assert out.decode("utf-8") == text


@given(st.binary(max_size=300), st.lists(st.integers(min_value=1, max_value=50), max_size=10))
def test_marker_scanner_finds_markers_in_any_chunking(noise, cuts):
    noise = noise.replace(b"\0WS", b"")
    scanner = MarkerScanner("abcd")
    stream = noise + b"\0WSabcd:end:7:0:\0" + noise
    pieces, last = [], 0
    for cut in sorted(cuts):
        if cut < len(stream):
            pieces.append(stream[last:cut])
            last = cut
    pieces.append(stream[last:])
    data, markers = b"", []
    for piece in pieces:
        for item in scanner.feed(piece):
            if isinstance(item, bytes):
                data += item
            else:
                markers.append(item)
    data += scanner.flush()
    assert [(m.kind, m.fields[:2]) for m in markers] == [("end", ["7", "0"])]
    assert data == noise + noise


def test_bash_quoting_is_one_line():
    assert "\n" not in quote_bash_line("a\nb\r\x00'\\")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["-sp", "Password: ", "pw"], ("Password: ", True)),
        (["-rp", "Name: ", "n"], ("Name: ", False)),
        (["-r", "-p", "Name: ", "name"], ("Name: ", False)),
        (["-pPrompt", "x"], ("Prompt", False)),
        (["-t", "5", "-p", "Q? ", "x"], ("Q? ", False)),
        (["name"], ("", False)),
    ],
)
def test_read_prompts_are_found_as_getopts_would(args, expected):
    from workshop.shell.persistent import _read_prompt

    assert _read_prompt("\x1f".join(args) + "\x1f") == expected
