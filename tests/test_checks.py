"""Checks live in the kernel: %expect and %%check, results in the record and badge."""

from __future__ import annotations

import pytest

from workshop.checks import CheckSyntaxError, cell_checks, parse_expect, split_checks
from workshop.records import StreamDigest, _stream_dict, fold_overwrites, stream_matches


# ---- parsing and evaluation (no kernel) ---------------------------------------
def test_parse_expect_forms():
    assert parse_expect("exit 3").value == 3
    regex = parse_expect(r"stdout /^a\.b 'x'$/i")
    assert (regex.kind, regex.stream, regex.value, regex.flags) == ("regex", "stdout", r"^a\.b 'x'$", "i")
    contains = parse_expect('stderr-contains "  two  spaces "')
    assert (contains.kind, contains.value) == ("contains", "  two  spaces ")
    assert parse_expect("stderr empty").kind == "empty"
    for bad in ("exit x", "exit 300", "stdout hello", "stdin empty", "stdout /(/", "stdout-contains"):
        with pytest.raises(CheckSyntaxError):
            parse_expect(bad)


def test_split_checks_body_above_scripts_below():
    code, scripts = split_checks("echo a\n%%check --points 2 --name one\ntest -f x\n%%check\ntrue\n")
    assert code == "echo a"
    assert [(s.name, s.points, s.script) for s in scripts] == [("one", 2.0, "test -f x"), ("check-2", None, "true")]
    assert split_checks("%%check\ntrue")[0] == ""
    for bad in ("%%check --points many\ntrue", "%%check --color\ntrue", "%%check\n", "%%check\na\n%%check\nb\n%%check --name check-2\nc"):
        with pytest.raises(CheckSyntaxError):
            split_checks(bad)
    found = cell_checks("%expect exit 0\n%expect stdout /x/\necho x\n%%check\ntrue")
    assert [e.spec for e in found.expectations] == ["exit 0", "stdout /x/"]
    assert len(found.scripts) == 1


def test_folded_digest_matches_frontend_text():
    digest = StreamDigest()
    for chunk in ("10%\r", "50%\r", "100%\n", "ab\b\bcd\n"):
        digest.add_shown(chunk)
    data = _stream_dict(digest)
    assert stream_matches("10%\r50%\r100%\nab\b\bcd\n", data)  # as the kernel sent it
    assert fold_overwrites("10%\r50%\r100%\nab\b\bcd\n") == "100%\ncd\n"
    assert stream_matches("100%\ncd\n", data)  # as JupyterLab saves it
    assert not stream_matches("100%\ncD\n", data)


# ---- in the kernel, locally and over SSH --------------------------------------
def test_expect_results_in_record_and_badge(kernel):
    result = kernel.run("%expect exit 0\n%expect stdout /^hel+o/\n%expect stderr empty\n"
                        "%expect stdout-contains world\necho hello world")
    assert result.status == "ok"
    assert result.stdout == "hello world\n"
    checks = result.record["checks"]
    assert [(c["name"], c["passed"]) for c in checks] == [
        ("exit 0", True), ("stdout /^hel+o/", True), ("stderr empty", True), ("stdout-contains world", True)]
    failed = kernel.run("%expect stdout /^bye/\n%expect stderr empty\necho hello; echo oops >&2")
    assert failed.status == "ok"  # a failed check is not an error reply
    assert [c["passed"] for c in failed.record["checks"]] == [False, False]
    assert failed.record["checks"][1]["message"] == "stderr is not empty: oops"
    badge = next(m["content"]["data"] for m in failed.messages if m["msg_type"] == "display_data")
    assert badge["text/plain"].startswith("✘ 2 of 2 checks failed")
    assert "✘ check 'stderr empty': stderr is not empty: oops" in badge["text/plain"]
    assert "stdout does not match /^bye/" in badge["text/html"]


def test_expected_nonzero_exit_is_not_an_error(kernel):
    result = kernel.run("%expect exit 2\nls /nonexistent-workshop-dir")
    assert result.status == "ok"
    assert not result.errors
    assert result.record["exit_status"] == 2 and result.record["status"] == "ok"
    assert result.record["checks"][0]["passed"]
    wrong = kernel.run("%expect exit 2\ntrue")
    assert wrong.status == "error"
    assert "expected 2" in wrong.errors[0]["evalue"]
    assert not wrong.record["checks"][0]["passed"]


def test_check_script_runs_after_the_cell(kernel):
    result = kernel.run(
        "cd /tmp && mkdir -p ws-check-demo && echo made\n"
        "%%check --points 3 --name dir-made\n"
        "test -d ws-check-demo || echo 'FAIL: no dir'\n"
        "cd /\n"
        "%%check --name file-made\n"
        "echo looking\n"
        "test -f ws-check-demo/nothing || { echo 'FAIL: ws-check-demo/nothing is missing'; exit 1; }\n"
    )
    assert result.status == "ok"
    assert result.stdout == "made\n"  # the scripts' output is not shown
    dir_made, file_made = result.record["checks"]
    assert dir_made["passed"] and dir_made["points"] == 3 and dir_made["name"] == "dir-made"
    assert not file_made["passed"]
    assert file_made["message"] == "ws-check-demo/nothing is missing"
    assert "looking" in file_made["output"]
    assert kernel.run("pwd").stdout == "/tmp\n"  # a check's cd does not move the student's shell
    alone = kernel.run("%%check\ntest -d /tmp/ws-check-demo")
    assert alone.status == "ok" and alone.record["checks"][0]["passed"]
    assert result.record["source_digest"] != alone.record["source_digest"]


def test_check_syntax_errors_are_cell_errors(kernel):
    result = kernel.run("echo hi\n%%check --points lots\ntrue")
    assert result.status == "error"
    assert "--points takes a number" in result.errors[0]["evalue"]
    result = kernel.run("%expect stdout hello\necho hello")
    assert result.status == "error"
    assert "between slashes" in result.errors[0]["evalue"]
    assert "usage" in result.errors[0]["evalue"]


def test_help_check_documents_the_syntax(start_kernel):
    kernel = start_kernel("local")
    text = kernel.run("%help check").stdout
    assert "%%check [--points N] [--name NAME]" in text
    assert "FAIL: reason" in text


def test_failed_check_as_error_when_configured(start_kernel):
    kernel = start_kernel("local", WORKSHOP_FAILED_CHECK="error")
    result = kernel.run("%expect stdout /never/\necho hello")
    assert result.status == "error"
    assert result.errors[0]["ename"] == "CheckFailed"
    assert result.record["exit_status"] == 0
