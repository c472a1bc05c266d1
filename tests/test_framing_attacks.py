"""Attacks on the framing from inside a cell: forged end markers that know the
session's nonce, a DEBUG trap that reads the end command's token, redefined
words the driver used to rely on.  A cell must never end itself early, put its
output into another cell, or hang the kernel."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workshop.session import Session
from workshop.settings import Settings

# A hang must end this file's run, not CI's (Hypothesis would go on shrinking
# against a stuck shell): pytest-timeout's thread method stops everything.
pytestmark = [pytest.mark.timeout(600, method="thread"), pytest.mark.slow]

# the cell finds the session's nonce where it is: in the driver's own functions
NONCE = "nonce=$(declare -f __ws_post | grep -o 'WS[0-9a-f]*:' | head -n 1); nonce=${nonce#WS}; nonce=${nonce%:}"


def run(session: Session, code: str):
    out = {"stdout": "", "stderr": ""}
    result = session.run_cell(code, on_output=lambda stream, text: out.__setitem__(stream, out[stream] + text))
    return result, out


@pytest.fixture
def session():
    with Session(Settings(timeout=30)) as s:
        yield s


def test_the_cell_can_read_the_nonce(session):
    """The premise of the attacks below: the nonce is no secret to a cell."""
    _, out = run(session, NONCE + '\necho "[$nonce]"')
    assert out["stdout"].startswith("[") and len(out["stdout"].strip()) == 18


def test_a_forged_end_marker_with_the_nonce_does_not_end_the_cell(session):
    forge = (NONCE + "\n"
             "for seq in $(seq 1 20); do for tok in 0 00000000 ''; do "
             "printf '\\0WS%s:end:%s.%s:0:\\0' \"$nonce\" \"$seq\" \"$tok\"; "
             "printf '\\0WS%s:end:%s.%s\\0' \"$nonce\" \"$seq\" \"$tok\" >&2; "
             "printf '\\0WS%s:end:%s:0:\\0' \"$nonce\" \"$seq\"; done; done\n"
             "sleep 1; echo LATE-OUTPUT")
    forged, out = run(session, forge)
    assert "LATE-OUTPUT" in out["stdout"], "the cell was ended before its own output"
    assert forged.record.as_dict().get("framing"), "the forgery was not reported"
    after, later = run(session, "%expect stdout /LATE-OUTPUT/\necho next")
    assert later["stdout"] == "next\n"
    assert after.record.checks[0]["passed"] is False


def test_a_debug_trap_that_reads_the_token_cannot_give_the_next_cell_output(session):
    """The strongest forgery a cell can make in its own shell: a DEBUG trap sees
    the end command with its token and prints a valid end marker early."""
    attack = (NONCE + "\n"
              "trap 'if [[ $BASH_COMMAND == *__ws_post* ]]; then set -- $BASH_COMMAND; "
              "printf \"\\0WS%s:end:%s.%s:0:\\0\" \"$nonce\" \"$2\" \"$3\"; "
              "printf \"\\0WS%s:end:%s.%s\\0\" \"$nonce\" \"$2\" \"$3\" >&2; "
              "sleep 0.5; echo FAKE-FOR-NEXT; fi' DEBUG\n"
              "echo attacker")
    run(session, attack)
    victim, out = run(session, "%expect stdout /FAKE-FOR-NEXT/\necho honest")
    for _ in range(3):  # whichever cell the late output lands in, it earns nothing
        data = victim.record.as_dict()
        if "FAKE-FOR-NEXT" in out["stdout"]:
            assert data.get("framing"), "output from an earlier cell was taken as this cell's"
            assert all(not c["passed"] for c in data["checks"])
        victim, out = run(session, "%expect stdout /FAKE-FOR-NEXT/\necho honest")
    assert out["stdout"] == "honest\n" and victim.record.checks[0]["passed"] is False


@pytest.mark.parametrize("breaker", [
    "eval '[() { return 0; }'",
    "test() { return 0; }; printf() { :; }; kill() { :; }",
    "builtin() { return 0; }; command() { return 0; }",
    "enable -n printf kill echo",
    "exec 50>&- 51>&-",
    "shopt -s extdebug; trap false DEBUG",
])
def test_a_cell_that_breaks_the_driver_never_hangs_the_kernel(session, breaker):
    started = time.monotonic()
    run(session, breaker)
    result, out = run(session, "echo still-here")
    assert time.monotonic() - started < 25, "the kernel hung on a broken driver"
    assert out["stdout"] == "still-here\n", out
    assert result.error is None


# ---- fuzz: output that knows the nonce ---------------------------------------------------
PIECES = st.sampled_from(["\0", "WS", "{nonce}", ":", "end", "in", "hello", "1", "2", "3", ".", "abc",
                          "x\n", "\0WS{nonce}:", "\0WS{nonce}:end:", "0:", "\\", "'"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.lists(PIECES, max_size=30))
def test_fuzz_output_that_knows_the_nonce_never_moves_between_cells(session, payload, tmp_path_factory):
    nonce = session.shell.nonce if session.shell else None
    if nonce is None:
        run(session, "true")
        nonce = session.shell.nonce
    data = "".join(payload).replace("{nonce}", nonce).encode()
    path = tmp_path_factory.mktemp("fuzz") / "payload"
    path.write_bytes(data)
    first, out = run(session, f"cat {path}; echo; echo END-OF-FIRST")
    assert "END-OF-FIRST" in out["stdout"], "the cell was ended before its own output"
    second, later = run(session, "echo sentinel")
    assert later["stdout"] == "sentinel\n", "output moved into the next cell"
    if b"\0WS" + nonce.encode() + b":" not in data:
        assert out["stdout"].encode() == data + b"\nEND-OF-FIRST\n"
