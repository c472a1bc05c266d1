"""stdout and stderr reach the notebook in the order they were written, each
still its own stream: through a real kernel over the Jupyter protocol, on this
machine and over the loopback sshd, many runs each (an ordering that holds by
luck fails some of them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

RUNS = 50


def lines(result) -> list[tuple[str, str]]:
    """The cell's output as (stream, line) pairs in the order the messages came."""
    out: list[tuple[str, str]] = []
    partial = {"stdout": "", "stderr": ""}
    for m in result.messages:
        if m["msg_type"] != "stream":
            continue
        name = m["content"]["name"]
        text = partial[name] + m["content"]["text"]
        *complete, partial[name] = text.split("\n")
        out.extend((name, line) for line in complete)
    return out


def test_the_issue_s_examples(shared_kernel):
    assert lines(shared_kernel.run("echo out; echo err >&2")) == [("stdout", "out"), ("stderr", "err")]
    assert lines(shared_kernel.run("echo err >&2; echo out")) == [("stderr", "err"), ("stdout", "out")]
    result = shared_kernel.run("for i in 1 2 3; do echo o$i; echo e$i >&2; done")
    assert lines(result) == [("stdout", "o1"), ("stderr", "e1"), ("stdout", "o2"),
                             ("stderr", "e2"), ("stdout", "o3"), ("stderr", "e3")]
    # still two streams, each whole: checks and records read them apart
    assert result.stdout == "o1\no2\no3\n" and result.stderr == "e1\ne2\ne3\n"


def test_one_process_and_its_children_alternating(shared_kernel):
    """Builtins and external programs (a process per write) take turns."""
    code = ("for i in $(seq 1 20); do echo o$i; /bin/echo e$i >&2; printf 'p%s\\n' $i >&2; "
            "/usr/bin/env printf 'x%s\\n' $i; done")
    expected = [pair for i in range(1, 21) for pair in
                (("stdout", f"o{i}"), ("stderr", f"e{i}"), ("stderr", f"p{i}"), ("stdout", f"x{i}"))]
    for run in range(RUNS):
        assert lines(shared_kernel.run(code)) == expected, f"run {run}"


def test_two_processes_handing_over_keep_the_order(shared_kernel):
    """A coprocess writes to stderr only after the cell wrote to stdout and told
    it so: the order is the processes' own, across both streams."""
    code = ('coproc { while read -r i; do echo "e$i" >&2; echo ack; done; }\n'
            'for i in 1 2 3 4 5 6 7 8; do echo "o$i"; echo "$i" >&"${COPROC[1]}"; read -r -u "${COPROC[0]}" _; done\n'
            'eval "exec ${COPROC[1]}>&-"; wait')
    expected = [pair for i in range(1, 9) for pair in (("stdout", f"o{i}"), ("stderr", f"e{i}"))]
    for run in range(RUNS):
        got = [pair for pair in lines(shared_kernel.run(code)) if re.fullmatch(r"[oe]\d+", pair[1])]
        assert got == expected, f"run {run}"


def test_concurrent_processes_each_keep_their_own_order(shared_kernel):
    """Processes writing at once interleave as the kernel saw their writes; each
    one's lines, across its two streams, stay in the order it wrote them."""
    code = ("(echo a; echo b >&2) & (echo c >&2; echo d) & "
            "for p in 1 2 3; do (for i in $(seq 1 10); do echo p$p:$i; echo p$p:$i+ >&2; done) & done; wait")
    for run in range(RUNS):
        got = lines(shared_kernel.run(code))
        mine = [pair for pair in got if not re.fullmatch(r"\[\d+\] \d+", pair[1])]  # bash's job notices
        assert sorted(mine) == sorted([("stdout", "a"), ("stderr", "b"), ("stderr", "c"), ("stdout", "d")] + [
            pair for p in (1, 2, 3) for i in range(1, 11)
            for pair in (("stdout", f"p{p}:{i}"), ("stderr", f"p{p}:{i}+"))]), f"run {run}: output lost"
        texts = [text for _, text in mine]
        assert texts.index("a") < texts.index("b") and texts.index("c") < texts.index("d"), f"run {run}: {texts}"
        for p in (1, 2, 3):
            own = [text for text in texts if text.startswith(f"p{p}:")]
            assert own == [t for i in range(1, 11) for t in (f"p{p}:{i}", f"p{p}:{i}+")], f"run {run}: {own}"


def test_a_long_alternating_cell_loses_nothing_and_does_not_flood(shared_kernel):
    """Far more switches than a notebook can show one by one: the first 200
    in order, then batches; all of each stream arrives, in its own order."""
    result = shared_kernel.run("for i in $(seq 1 20000); do echo o$i; echo e$i >&2; done; echo done")
    assert result.status == "ok"
    assert result.stdout == "".join(f"o{i}\n" for i in range(1, 20001)) + "done\n"
    assert result.stderr == "".join(f"e{i}\n" for i in range(1, 20001))
    assert lines(result)[:200] == [pair for i in range(1, 101) for pair in (("stdout", f"o{i}"), ("stderr", f"e{i}"))]
    streams = [m for m in result.messages if m["msg_type"] == "stream"]
    assert len(streams) < 2000, "a message per switch would flood the notebook"


def test_a_line_written_in_pieces_is_one_output(shared_kernel):
    """ls writes its error in three write()s; the notebook gets one stderr output,
    not a line cut in two (saved notebooks and HTML exports showed two)."""
    result = shared_kernel.run("ls /nonexistent")
    streams = [m["content"] for m in result.messages if m["msg_type"] == "stream"]
    assert streams == [{"name": "stderr", "text": "ls: cannot access '/nonexistent': No such file or directory\n"}]
    # pieces a little apart, on both streams, still one message per stream switch
    result = shared_kernel.run("printf 'a ' ; /bin/echo -n b; echo ' c'; printf 'x' >&2; sleep 0.01; echo ' y' >&2; echo z")
    streams = [(m["content"]["name"], m["content"]["text"]) for m in result.messages if m["msg_type"] == "stream"]
    assert streams == [("stdout", "a b c\n"), ("stderr", "x y\n"), ("stdout", "z\n")]


def test_output_still_shows_while_the_cell_runs(shared_kernel):
    result = shared_kernel.run("echo start; sleep 2; echo end")
    sent = {m["content"]["text"]: m["header"]["date"] for m in result.messages if m["msg_type"] == "stream"}
    assert set(sent) == {"start\n", "end\n"}
    assert (sent["end\n"] - sent["start\n"]).total_seconds() > 1.5


def test_paced_output_keeps_the_order(start_kernel):
    """Under a Jupyter server's rate limits (paced output, as in JupyterLab) a
    cell's switches still arrive in order, at once rather than one per gap."""
    kernel = start_kernel("local", WORKSHOP_IOPUB_PACING="on")
    code = "for i in $(seq 1 60); do echo o$i; echo e$i >&2; done"
    expected = [pair for i in range(1, 61) for pair in (("stdout", f"o{i}"), ("stderr", f"e{i}"))]
    for run in range(10):
        assert lines(kernel.run(code)) == expected, f"run {run}"


def test_a_target_without_perl_keeps_each_stream_and_says_so(start_kernel, tmp_path):
    """The fallback: no relay, plain pipes.  Each stream is whole and in order,
    and the first cell says that the two may not be in order with each other."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for program in sorted(Path(directory).iterdir()):
            if not program.name.startswith("perl") and not (bindir / program.name).exists():
                (bindir / program.name).symlink_to(program)
    kernel = start_kernel("local", PATH=str(bindir))
    first = kernel.run("command -v perl || echo no perl")
    assert first.stdout == "no perl\n"
    assert "cannot run the relay that keeps stdout and stderr in order" in first.stderr
    result = kernel.run("for i in 1 2 3; do echo o$i; echo e$i >&2; done")
    assert result.stdout == "o1\no2\no3\n" and result.stderr == "e1\ne2\ne3\n"
    assert "relay" not in result.stderr, "said once, in the first cell"


@pytest.mark.parametrize("program", [
    "python3 -c 'import sys; sys.stdout.write(\"x\" * 3_000_000)'",  # one write of 3 MB
    "dd if=/dev/zero bs=1M count=5 status=none | tr '\\0' x",
])
def test_big_writes_go_through(shared_kernel, program):
    result = shared_kernel.run(f"{program}; echo; echo end >&2")
    assert result.status == "ok", result.stderr
    assert result.stdout.count("x") in (3_000_000, 5 * 1024 * 1024)
    assert result.stderr.endswith("end\n")


@pytest.fixture(scope="module")
def plain_user(sshd):
    """An ordinary account that logs in over the loopback sshd (no root, no sudo)."""
    name = "ws-order"
    made = subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", name],
                          capture_output=True).returncode == 0
    sshd.authorize(name)
    yield sshd.url_for(name)
    if made:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "--remove", "--force", name], check=False, capture_output=True)


def test_a_non_root_shell_over_ssh_keeps_the_order(start_kernel, plain_user):
    """Not root: the relay cannot force a bigger send buffer, and still orders."""
    kernel = start_kernel(plain_user)
    assert kernel.run("id -u").stdout != "0\n"
    code = "for i in $(seq 1 30); do echo o$i; /bin/echo e$i >&2; done"
    expected = [pair for i in range(1, 31) for pair in (("stdout", f"o{i}"), ("stderr", f"e{i}"))]
    for run in range(RUNS):
        assert lines(kernel.run(code)) == expected, f"run {run}"
    big = kernel.run("python3 -c 'import sys; sys.stdout.write(\"x\" * 200_000)'; echo")
    assert big.status == "ok" and big.stdout.count("x") == 200_000


def test_plain_pipes_on_request_let_programs_open_dev_stdout(start_kernel):
    """WORKSHOP_ORDERED_OUTPUT=0: no relay, so `tee /dev/stderr` works again (the
    sockets the relay gives cannot be opened by name)."""
    kernel = start_kernel("local", WORKSHOP_ORDERED_OUTPUT="0")
    result = kernel.run("echo both | tee /dev/stderr")
    assert result.status == "ok", result.stderr
    assert result.stdout == "both\n" and result.stderr == "both\n"
    assert "relay" not in result.stderr, "asked for: no notice"
    assert "workshop-relay" not in kernel.run("ps -o comm= -p $PPID").stdout
