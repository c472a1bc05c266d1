"""The shell session contract (DESIGN.md "The shell session"), through a real
kernel over the Jupyter protocol, on this machine and over a loopback sshd."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from harness import RECORD_MIME

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_state_persists_across_cells(shared_kernel):
    kernel = shared_kernel
    assert kernel.run('cd /tmp && export GREETING=hello && f() { echo "$GREETING from f"; }; set -o noclobber').status == "ok"
    result = kernel.run("pwd; f; alias ll='ls -l'; shopt -po noclobber")
    assert result.stdout == "/tmp\nhello from f\nset -o noclobber\n"
    assert result.status == "ok"


def test_stdout_and_stderr_are_separate_streams_in_order(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("for i in 1 2 3; do echo out$i; echo err$i >&2; done")
    assert result.stdout == "out1\nout2\nout3\n"
    assert result.stderr == "err1\nerr2\nerr3\n"
    names = {m["content"]["name"] for m in result.messages if m["msg_type"] == "stream"}
    assert names == {"stdout", "stderr"}


def test_failed_last_command_makes_the_cell_an_error(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("echo before\nls /no/such/dir\n")
    assert result.status == "error"
    assert result.exit_status == 2
    assert result.record["status"] == "error"
    assert result.errors and "exit status 2" in result.errors[0]["evalue"]
    assert "No such file" in result.stderr


def test_earlier_failures_are_listed_with_their_lines(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("echo one\nfalse\necho three\n(exit 7)\necho five")
    assert result.status == "ok", "the last command succeeded"
    failed = result.record["failed_commands"]
    assert [(f["line"], f["status"]) for f in failed] == [(2, 1), (4, 7)]
    assert failed[0]["command"] == "false"


def test_a_silent_command_shows_nothing_and_succeeds(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("true")
    assert result.status == "ok" and result.stdout == "" and result.stderr == ""
    assert result.record["exit_status"] == 0


@pytest.mark.parametrize(
    "code",
    [
        "echo 'unbalanced",
        'echo "unbalanced',
        "}",
        "fi",
        "echo $(",
        "done",
        "if true; then",
        "case x in",
    ],
)
def test_broken_syntax_is_an_error_in_that_cell_only(shared_kernel, code):
    kernel = shared_kernel
    result = kernel.run(code)
    assert result.status == "error"
    assert result.exit_status in (1, 2)
    assert kernel.run("echo still-here").stdout == "still-here\n"


@pytest.mark.parametrize("code", ["cat <<EOF\nno end marker", "echo trailing \\", "\\"])
def test_unfinished_input_does_not_swallow_the_next_cell(shared_kernel, code):
    kernel = shared_kernel
    kernel.run(code)
    assert kernel.run("echo still-here").stdout == "still-here\n"


def test_heredocs_quotes_and_special_characters_pass_through(shared_kernel):
    kernel = shared_kernel
    code = "cat <<'EOF'\n$HOME `x` \"q\" 'q' \\ }\nEOF\nprintf '%s\\n' \"a'b\" 'c\"d' $'tab\\there'"
    result = kernel.run(code)
    assert result.stdout == "$HOME `x` \"q\" 'q' \\ }\na'b\nc\"d\ntab\there\n"


def test_exit_restarts_the_shell_with_a_notice(shared_kernel):
    kernel = shared_kernel
    kernel.run("export KEPT=no; cd /")
    result = kernel.run("echo bye; exit 3")
    assert result.status == "error"
    assert result.exit_status == 3
    assert "the shell ended" in result.stderr and "the next cell starts a new shell" in result.stderr
    nxt = kernel.run("echo ${KEPT:-gone}")
    assert nxt.stdout == "gone\n"
    assert "new shell" not in nxt.stderr  # said once, in the cell where the shell ended
    assert kernel.run("echo fine").stdout == "fine\n"


def test_exec_replacing_the_shell_is_survived(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("exec echo replaced")
    assert result.stdout == "replaced\n"
    assert kernel.run("echo back").stdout == "back\n"


def test_exec_redirection_does_not_hide_the_end_of_the_cell(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("exec >/dev/null 2>&1; echo hidden")
    assert result.status == "ok" and result.stdout == ""
    assert kernel.run("echo visible").stdout == "visible\n"


def test_a_cell_cannot_remove_or_alias_away_the_framing(shared_kernel):
    kernel = shared_kernel
    result = kernel.run(
        "alias __ws_post=true __ws_pre=false eval=false\n"
        "unset PATH __ws_post __ws_pre __ws_dir; unset -f __ws_post __ws_pre; echo still here"
    )
    assert "still here" in result.stdout
    assert "readonly" in result.stderr
    assert kernel.run("echo fine").stdout == "fine\n"
    assert kernel.run("unalias -a; export PATH=/usr/sbin:/usr/bin:/sbin:/bin").status == "ok"


def test_a_syntax_error_inside_case_does_not_confuse_later_cells(shared_kernel):
    kernel = shared_kernel
    # bash 5.2 leaves its parser unable to see `{`, `if`, ... after this error in eval
    for _ in range(2):
        broken = kernel.run('echo first\ncase x in "')
        assert broken.status == "error" and broken.stdout == "first\n"
        assert "command not found" not in broken.stderr
    result = kernel.run("{ echo braces; }; if true; then echo reserved words work; fi")
    assert result.stdout == "braces\nreserved words work\n"


def test_a_shell_that_stops_framing_is_replaced_after_the_interrupt(shared_kernel):
    kernel = shared_kernel
    # with its end-marker descriptor pointed elsewhere the shell cannot end the cell
    result = kernel.run("%timeout 0.5\nexec 50>/dev/null; sleep 30", timeout=30)
    assert result.record["timed_out"] is True
    # the shell is back at its prompt without having ended the cell: found from outside
    assert "broke the shell's framing" in result.stderr or "did not finish the cell" in result.stderr
    nxt = kernel.run("echo new")
    assert "the next cell starts a new shell" in result.stderr
    assert nxt.stdout == "new\n" and "new shell" not in nxt.stderr  # said once, above
    assert kernel.run("%timeout off").status == "ok"


def test_binary_output_and_output_without_newline(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("printf 'a\\000b\\377c'; printf 'tail'")
    assert result.status == "ok"
    assert result.stdout.startswith("a\x00b") and result.stdout.endswith("ctail")
    assert "\ufffd" in result.stdout
    assert kernel.run("echo next").stdout == "next\n"


def test_a_very_long_line_arrives_whole(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("head -c 3000000 /dev/zero | tr '\\0' x")
    assert result.stdout == "x" * 3_000_000


def test_carriage_return_progress_is_passed_to_the_frontend(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("for i in 1 2 3; do printf '\\r%d%%' $i; done; echo")
    assert result.stdout == "\r1%\r2%\r3%\n"


def test_stdin_reads_eof_without_a_frontend_input(shared_kernel):
    kernel = shared_kernel
    result = kernel.run('read -r line; echo "status=$? line=[$line]"; cat; echo done')
    assert result.stdout == "status=1 line=[]\ndone\n"


def test_read_uses_the_notebook_input_box_when_allowed(shared_kernel):
    kernel = shared_kernel
    prompts = []

    def answer(prompt, password):
        prompts.append((prompt, password))
        return "Ada Lovelace" if not password else "s3cret"

    result = kernel.run(
        'read -r -p "Name: " name; read -s -p "Pass: " pw; echo "hi $name (${#pw})"',
        allow_stdin=True,
        on_input=answer,
    )
    assert result.stdout == "hi Ada Lovelace (6)\n"
    assert prompts == [("Name: ", False), ("Pass: ", True)]


def test_read_from_a_file_is_not_sent_to_the_input_box(shared_kernel):
    kernel = shared_kernel
    result = kernel.run(
        "printf 'x\\ny\\n' > /tmp/ws-read-test; while read -r l; do echo got $l; done < /tmp/ws-read-test; rm /tmp/ws-read-test",
        allow_stdin=True,
        on_input=lambda prompt, password: pytest.fail("no input request expected"),
    )
    assert result.stdout == "got x\ngot y\n"


def _interrupt_after(kernel, seconds):
    timer = threading.Timer(seconds, kernel.interrupt)
    timer.start()
    return timer


@pytest.mark.parametrize(
    "command",
    [
        "sleep 30",
        "sleep 30 | cat",
        "bash -c 'trap \"\" INT; sleep 30'",
        "python3 -c 'import time\ntry:\n  time.sleep(30)\nexcept KeyboardInterrupt:\n  print(\"caught\")'",
    ],
    ids=["sleep", "pipeline", "ignores-sigint", "catches-sigint"],
)
def test_interrupt_stops_the_command_abandons_the_cell_and_keeps_state(shared_kernel, command):
    kernel = shared_kernel
    kernel.run("export MARK=kept; cd /tmp")
    _interrupt_after(kernel, 0.5)
    started = time.monotonic()
    result = kernel.run(f"echo start\n{command}\necho not-reached")
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 1.0, f"interrupt took {elapsed - 0.5:.2f} s"
    assert "not-reached" not in result.stdout
    assert result.status == "error"
    assert result.exit_status == 130
    assert result.record["interrupted"] is True
    after = kernel.run("echo $MARK; pwd")
    assert after.stdout == "kept\n/tmp\n"


def test_interrupt_stops_background_jobs_the_cell_started(shared_kernel):
    kernel = shared_kernel
    kernel.run("sleep 1234 & echo $! > /tmp/ws-bg-old.pid")
    _interrupt_after(kernel, 0.5)
    kernel.run("sleep 4321 & echo $! > /tmp/ws-bg.pid; sleep 30")
    time.sleep(0.2)
    result = kernel.run(
        "kill -0 $(cat /tmp/ws-bg.pid) 2>/dev/null && echo new-alive || echo new-gone;"
        "kill -0 $(cat /tmp/ws-bg-old.pid) 2>/dev/null && echo old-alive || echo old-gone;"
        "kill $(cat /tmp/ws-bg-old.pid); rm -f /tmp/ws-bg.pid /tmp/ws-bg-old.pid"
    )
    assert result.stdout == "new-gone\nold-alive\n"


def test_timeout_interrupts_and_says_so(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("%timeout 0.5\necho begin; sleep 20; echo never")
    assert result.exit_status == 130
    assert result.record["timed_out"] is True
    assert "timeout" in result.stderr
    assert "never" not in result.stdout
    assert kernel.run("%timeout off\nsleep 0.7; echo finished").stdout == "finished\n"


def test_a_notebook_in_a_jupyter_server_stops_a_runaway_cell_by_default(start_kernel, tmp_path):
    """A student's forgotten `yes` or hung command ends on its own and the cell says
    how to give it longer (the default is WORKSHOP_NOTEBOOK_TIMEOUT, 600 s; 1 s here)."""
    notebook = str(tmp_path / "class.ipynb")  # a Jupyter server names the notebook
    kernel = start_kernel("local", JPY_SESSION_NAME=notebook, WORKSHOP_NOTEBOOK_TIMEOUT="1")
    assert kernel.run("%timeout").stdout == "timeout: 1 s (the default in a notebook)\n"
    result = kernel.run("echo begin; sleep 30; echo never", timeout=30)
    assert result.record["timed_out"] is True and result.exit_status == 130
    assert result.stdout == "begin\n"
    notices = [line for line in result.stderr.splitlines() if "limit" in line]
    assert len(notices) == 1 and "default 1 s limit" in notices[0] and "%timeout SECONDS" in notices[0]
    assert kernel.run("%timeout 5\nsleep 1.5; echo finished").stdout == "finished\n"
    assert kernel.run("%timeout").stdout == "timeout: 5 s\n"


def test_no_default_timeout_where_a_runner_or_the_instructor_sets_it(start_kernel, tmp_path):
    """nbclient (`workshop run`, papermill, CI) keeps its own limit; WORKSHOP_TIMEOUT=off
    lets an instructor's server run long cells."""
    headless = start_kernel("local")
    assert headless.run("%timeout").stdout == "timeout: off\n"
    instructor = start_kernel("local", JPY_SESSION_NAME=str(tmp_path / "demo.ipynb"), WORKSHOP_TIMEOUT="off",
                              WORKSHOP_NOTEBOOK_TIMEOUT="1")
    assert instructor.run("%timeout").stdout == "timeout: off\n"
    assert instructor.run("sleep 1.5; echo finished").stdout == "finished\n"


def test_record_digests_match_what_was_shown(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("echo hello; echo oops >&2")
    record = result.record
    assert record["schema"] == 1
    assert record["stdout"]["digest"] == "sha256:" + hashlib.sha256(result.stdout.encode()).hexdigest()
    assert record["stderr"]["digest"] == "sha256:" + hashlib.sha256(result.stderr.encode()).hexdigest()
    assert record["source_digest"] == "sha256:" + hashlib.sha256(b"echo hello; echo oops >&2").hexdigest()
    assert record == result.reply["metadata"]["workshop"]
    assert record["session"] and record["execution_count"] == result.reply["content"]["execution_count"]
    assert record["target"]["kind"] in ("local", "ssh")
    if record["target"]["kind"] == "ssh":
        assert record["target"]["host_key_fingerprint"].startswith("SHA256:")
    bundle = next(m["content"]["data"] for m in result.messages if m["msg_type"] == "display_data")
    assert "✔" in bundle["text/html"] and "✔" in bundle["text/plain"]


def test_completion_of_commands_paths_and_variables(shared_kernel):
    kernel = shared_kernel
    kernel.run("export WS_COMPLETE_ME=1; mkdir -p /tmp/ws-compl/dir && touch /tmp/ws-compl/file.txt")
    assert "echo" in kernel.complete("ech")["matches"]
    reply = kernel.complete("ls /tmp/ws-compl/")
    assert set(reply["matches"]) == {"/tmp/ws-compl/dir/", "/tmp/ws-compl/file.txt"}
    assert reply["cursor_start"] == 3
    assert kernel.complete("echo $WS_COMPLETE")["matches"] == ["$WS_COMPLETE_ME"]
    kernel.run("rm -r /tmp/ws-compl")


def test_is_complete(shared_kernel):
    kernel = shared_kernel
    assert kernel.is_complete("echo hi")["status"] == "complete"
    assert kernel.is_complete("for i in 1 2; do")["status"] == "incomplete"
    assert kernel.is_complete("cat <<EOF\nabc")["status"] == "incomplete"
    assert kernel.is_complete("echo 'abc")["status"] == "incomplete"
    assert kernel.is_complete("fi")["status"] == "invalid"


def test_unknown_magic_gives_usage_and_the_kernel_goes_on(shared_kernel):
    kernel = shared_kernel
    result = kernel.run("%frobnicate now\necho no")
    assert result.status == "error"
    assert "unknown magic %frobnicate" in result.errors[0]["evalue"]
    assert "%lsmagic" in result.errors[0]["evalue"]
    assert result.stdout == ""
    bad = kernel.run("%timeout soon")
    assert bad.status == "error" and "not a number" in bad.errors[0]["evalue"]
    assert kernel.run("echo ok").stdout == "ok\n"


def test_output_beyond_the_limit_shows_head_and_tail_and_is_saved_whole(start_kernel, tmp_path):
    """Past the limit a line says at once where the output was cut and where all of
    it is saved; the end follows when the cell ends; the record counts every byte."""
    kernel = start_kernel("local", WORKSHOP_OUTPUT_LIMIT="1000", WORKSHOP_SAVED_OUTPUT_DIR=str(tmp_path / "saved"))
    result = kernel.run("seq 1 20000; echo THE-END")  # 108,894 bytes
    head, cut, rest = result.stdout.partition("\n[workshop: output cut here, at 1,000 characters; all of it is "
                                              "being saved in ")
    assert cut and head == "\n".join(map(str, range(1, 1000)))[:1000], result.stdout[:1200]
    saved = Path(rest.split(";")[0])
    assert saved.parent == tmp_path / "saved" and saved.name.endswith(".stdout.txt")
    assert saved.read_text() == "".join(f"{i}\n" for i in range(1, 20001)) + "THE-END\n"
    assert f"characters not shown; all of it is in {saved}; its last 16,384 follow]" in rest
    assert rest.endswith("19999\n20000\nTHE-END\n\n[workshop: 108,902 bytes in all; the record counts all of it]\n")
    assert result.record["stdout"]["bytes"] == 108_902
    assert result.record["stdout"]["truncated"] is True
    assert kernel.run("echo small").stdout == "small\n"  # the next cell is whole, and not saved
    assert len(list((tmp_path / "saved").iterdir())) == 1


def test_strict_mode_in_a_cell_does_not_break_the_framing(start_kernel):
    kernel = start_kernel("local")
    assert kernel.run("set -uo pipefail; X=1").status == "ok"
    assert kernel.run("echo $X").stdout == "1\n"
    unbound = kernel.run("echo $NOT_SET_ANYWHERE")
    assert unbound.status == "error" and "unbound variable" in unbound.stderr
    # errexit ends an interactive shell as in a terminal: the kernel says so and goes on
    kernel.run("set -e")
    ended = kernel.run("false")
    assert ended.status == "error" and "next cell starts a new shell" in ended.stderr
    assert kernel.run("echo alive").stdout == "alive\n"


def test_a_pipeline_cut_short_leaves_no_shell_noise(shared_kernel):
    result = shared_kernel.run("seq 1 100000 | head -2; yes | head -1")
    assert result.stdout == "1\n2\ny\n"
    assert result.stderr == ""


def test_interrupt_while_the_input_box_waits(shared_kernel):
    kernel = shared_kernel
    kernel.run("export KEEP=yes")

    def interrupt_instead_of_answering(prompt, password):
        threading.Timer(0.3, kernel.interrupt).start()
        return None

    started = time.monotonic()
    result = kernel.run('read -p "Name: " name; echo "never $name"', allow_stdin=True,
                        on_input=interrupt_instead_of_answering)
    assert time.monotonic() - started < 3
    assert result.exit_status == 130 and "never" not in result.stdout
    assert kernel.run("echo $KEEP").stdout == "yes\n"


def test_magics_after_blank_or_comment_lines_still_apply(shared_kernel):
    result = shared_kernel.run("\n# a comment first\n%expect stdout-contains nope\necho yes")
    assert [c["passed"] for c in result.record["checks"]] == [False]


def test_a_magic_below_shell_code_is_an_error_not_a_command(shared_kernel):
    result = shared_kernel.run("echo first\n%%chroot /nonexistent\nrm -rf /tmp/never-run-this")
    assert result.status == "error"
    assert "line 2: %%chroot comes after shell code" in result.errors[0]["evalue"]
    assert result.stdout == ""


def test_the_kernel_advertises_only_what_it_does_and_refuses_subshells(shared_kernel):
    kernel = shared_kernel
    msg_id = kernel.kc.kernel_info()
    reply = kernel.kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["supported_features"] == []
    for request in ("create_subshell_request", "list_subshell_request"):
        msg = kernel.kc.session.msg(request, {})
        kernel.kc.control_channel.send(msg)
        answer = kernel.kc.control_channel.get_msg(timeout=10)
        assert answer["parent_header"]["msg_id"] == msg["header"]["msg_id"]
        assert answer["content"]["status"] == "error"
        assert "not supported" in answer["content"]["evalue"]
    assert kernel.run("echo after").stdout == "after\n"  # and the kernel goes on


def test_the_shipped_notebooks_hold_the_language_info_the_kernel_reports(shared_kernel):
    """A frontend writes kernel_info's language_info into the notebook when the kernel
    answers: any difference shows a notebook just opened as changed."""
    kernel = shared_kernel
    msg_id = kernel.kc.kernel_info()
    reply = kernel.kc.get_shell_msg(timeout=10)
    while reply["parent_header"]["msg_id"] != msg_id:  # a reply to the harness's own request at start
        reply = kernel.kc.get_shell_msg(timeout=10)
    reported = reply["content"]["language_info"]
    shipped = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert shipped
    for path in shipped:
        assert json.loads(path.read_text(encoding="utf-8"))["metadata"]["language_info"] == reported, path.name


def test_is_complete_waits_for_declarations_and_cell_magics(shared_kernel):
    kernel = shared_kernel
    assert kernel.is_complete("%expect exit 0")["status"] == "incomplete"
    assert kernel.is_complete("%expect exit 0\necho hi")["status"] == "complete"
    assert kernel.is_complete("%%chroot rootfs\necho hi")["status"] == "incomplete"
    assert kernel.is_complete("%%chroot rootfs\necho hi\n\n")["status"] == "complete"
    assert kernel.is_complete("%%chroot rootfs\necho hi\n")["status"] == "complete"  # one empty line ends it
    assert kernel.is_complete("%%chroot rootfs\n")["status"] == "incomplete"  # no body yet
    assert kernel.is_complete("echo hi\n%%check")["status"] == "incomplete"
    assert kernel.is_complete("%lsmagic")["status"] == "complete"
    reply = kernel.is_complete("if true; then")
    assert reply["status"] == "incomplete" and reply["indent"] == "  "


# ---- display FILE ----------------------------------------------------------------
def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour, made by hand (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def displays(result) -> list[dict]:
    return [m["content"]["data"] for m in result.messages if m["msg_type"] == "display_data"
            and RECORD_MIME not in m["content"]["data"]]


def test_display_shows_pictures_and_html_as_rich_output(shared_kernel, tmp_path):
    png = _png(3, 2, (255, 0, 0))
    (tmp_path / "red.png").write_bytes(png)
    (tmp_path / "pic.svg").write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    (tmp_path / "page.html").write_text("<p>costs $5, not $6</p>")
    (tmp_path / "notes.txt").write_text("just words")
    result = shared_kernel.run(f"cd {tmp_path}; echo before; display red.png; echo between; display pic.svg page.html;"
                               " cat red.png | display; echo after")
    assert result.status == "ok", (result.stderr, result.errors)
    shown = displays(result)
    assert [sorted(d) for d in shown] == [["image/png", "text/plain"], ["image/svg+xml", "text/plain"],
                                          ["text/html", "text/plain"], ["image/png", "text/plain"]]
    assert base64.b64decode(shown[0]["image/png"]) == png and shown[0]["text/plain"] == "[red.png: image/png, 66 bytes]"\
        .replace("66", str(len(png)))
    assert shown[1]["image/svg+xml"].startswith("<?xml") and "<svg" in shown[1]["image/svg+xml"]
    assert "<p>costs $5, not $6</p>" in shown[2]["text/html"] and "mathjax_ignore" in shown[2]["text/html"]
    assert base64.b64decode(shown[3]["image/png"]) == png
    # in the order written, between the cell's own lines; no picture bytes in the text
    kinds = [m["msg_type"] if m["msg_type"] != "stream" else m["content"]["text"] for m in result.messages
             if m["msg_type"] in ("stream", "display_data")]
    assert kinds[:6] == ["before\n", "display_data", "between\n", "display_data", "display_data", "display_data"]
    assert result.stdout == "before\nbetween\nafter\n"
    # what it cannot show, it says
    bad = shared_kernel.run(f"display {tmp_path}/notes.txt {tmp_path}/missing.png")
    assert bad.status == "error" and bad.stderr == f"display: {tmp_path}/missing.png: not a readable file\n"
    assert displays(bad)[0]["text/plain"] == f"display: {tmp_path}/notes.txt is not a PNG, JPEG, GIF, SVG or HTML file (10 bytes)"


def test_a_full_screen_program_is_stopped_at_once_with_what_to_use_instead(shared_kernel, tmp_path):
    """A program that switches to the terminal's full-screen display (vim, nano, htop)
    would wait for keys no cell can send, and draw escape debris: it is stopped, named,
    and the student told what to use instead; the shell goes on."""
    program = tmp_path / "vim"  # a stand-in that needs no editor installed, drawing as vim does
    program.write_text("#!/bin/sh\nprintf 'text first\\n\\033[?1002h\\033[?1049h\\033[H\\033[2J~ drawn'\nsleep 300\n")
    program.chmod(0o755)
    kernel = shared_kernel
    started = time.monotonic()
    result = kernel.run(f"echo before; {program}; echo after", timeout=60)
    assert time.monotonic() - started < 30  # not the sleep's 300 s
    assert result.status == "error"
    assert result.stdout == "before\ntext first\n"  # no escape sequences, nothing it drew, not "after"
    error = result.errors[0]["evalue"]
    assert error.startswith("vim needs a terminal") and "%%file" in error and "Terminal" in error, error
    assert kernel.run(f"pgrep -f {program} || echo gone").stdout == "gone\n"
    assert kernel.run("echo works").stdout == "works\n"
