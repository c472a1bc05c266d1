"""The cell runner without Jupyter: workshop.session.Session driven directly,
as `workshop run`, benchmarks and scripts can; and its settings."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
from harness import KernelHarness, clean_env

from workshop.notebook_file import NotebookFile
from workshop.records import sha256_text
from workshop.session import Session, upload_through_shell
from workshop.settings import Settings


def run(session: Session, code: str):
    out: dict[str, str] = {"stdout": "", "stderr": ""}

    def sink(stream: str, text: str) -> None:
        out[stream] += text

    result = session.run_cell(code, on_output=sink)
    return result, out


def test_cells_share_one_shell_and_leave_records():
    with Session(Settings()) as session:
        first, _ = run(session, "cd /tmp && export GREETING=hi")
        second, out = run(session, 'echo "$GREETING from $PWD"; echo oops >&2; false')
    assert first.error is None and first.record.exit_status == 0
    assert out == {"stdout": "hi from /tmp\n", "stderr": "oops\n"}
    assert second.error is not None and second.error.ename == "CellError"
    data = second.record.as_dict()
    assert data["exit_status"] == 1 and data["status"] == "error"
    assert data["stdout"]["digest"] == sha256_text("hi from /tmp\n")
    assert data["source_digest"] == sha256_text('echo "$GREETING from $PWD"; echo oops >&2; false')


def test_magics_and_checks_run_through_the_session(tmp_path):
    target = tmp_path / "hello.sh"
    with Session(Settings()) as session:
        written, out = run(session, f"%%file {target} --mode 755\necho hello from a file\n")
        assert written.error is None, written.error
        assert "wrote" in out["stdout"]
        checked, _ = run(session, f"%expect stdout /^hello/\n{target}\n%%check --name ran\ntest -x {target}")
    assert target.read_text() == "echo hello from a file\n" and os.access(target, os.X_OK)
    assert [(c["name"], c["passed"]) for c in checked.record.checks] == [("stdout /^hello/", True), ("ran", True)]


def test_a_usage_error_is_a_failed_cell_and_the_session_goes_on():
    with Session(Settings()) as session:
        bad, _ = run(session, "%%cgroup --pids\ntrue")
        good, out = run(session, "echo fine")
    assert bad.error is not None and bad.error.ename == "MagicError"
    assert "--pids needs a value" in bad.error.evalue and "usage: %%cgroup" in bad.error.evalue
    assert good.error is None and out["stdout"] == "fine\n"


def test_timeout_from_a_magic_and_interrupt_from_another_thread():
    with Session(Settings()) as session:
        timed, _ = run(session, "%timeout 0.5\nsleep 30")
        assert session.timeout == 0.5
        assert timed.record.timed_out and timed.error is not None
        run(session, "%timeout off")
        threading.Timer(0.5, session.interrupt).start()
        started = time.monotonic()
        stopped, _ = run(session, "sleep 30")
        assert time.monotonic() - started < 10
        assert stopped.record.interrupted and stopped.record.exit_status == 130
        after, out = run(session, "echo alive")
    assert after.error is None and out["stdout"] == "alive\n"


def test_closing_the_session_undoes_what_magics_made(tmp_path):
    rootfs = tmp_path / "rootfs"
    session = Session(Settings())
    made, _ = run(session, f"%rootfs {rootfs}")
    assert made.error is None, made.error
    kept, out = run(session, f"%%overlay {rootfs} --name keep\ntouch /made-here")
    assert kept.error is None, kept.error
    merged = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if "/keep/merged" in line]
    assert merged, "the named snapshot is mounted while the session lives"
    session.close()
    mounts = Path("/proc/mounts").read_text()
    assert all(path not in mounts for path in merged)
    assert not Path(merged[0]).parent.exists()
    assert not (rootfs / "made-here").exists()


def test_upload_writes_exact_bytes_locally_and_over_ssh(tmp_path, sshd):
    data = bytes(range(256)) * 1000
    for spec in ("local", sshd.url):
        path = tmp_path / f"blob-{'local' if spec == 'local' else 'ssh'}"
        with Session(Settings(target=spec)) as session:
            result = session.upload(str(path), data, mode="750")
        assert result.ok, result.problem()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert oct(path.stat().st_mode & 0o777) == "0o750"


def test_upload_through_the_shell_when_the_transport_cannot(tmp_path):
    data = b"\x00binary\xff" * 50_000
    path = tmp_path / "through-shell"
    with Session(Settings()) as session:
        result = upload_through_shell(session.run_hidden, str(path), data, "700", chunk=64 * 1024)
    assert result.ok
    assert path.read_bytes() == data and oct(path.stat().st_mode & 0o777) == "0o700"


# ---- settings ---------------------------------------------------------------------
def test_settings_read_the_environment_and_refuse_nonsense(monkeypatch, caplog):
    monkeypatch.setenv("WORKSHOP_TIMEOUT", "12.5")
    monkeypatch.setenv("WORKSHOP_OUTPUT_LIMIT", "lots")
    monkeypatch.setenv("WORKSHOP_RECORDS", "0")
    settings = Settings()
    assert settings.timeout == 12.5
    assert settings.records is False
    assert settings.output_limit == 8 * 1024 * 1024  # the default stays
    assert "WORKSHOP_OUTPUT_LIMIT='lots' is not usable" in caplog.text


def test_settings_from_traitlets_config_win_over_the_environment(monkeypatch):
    from traitlets.config import Config

    monkeypatch.setenv("WORKSHOP_TIMEOUT", "12.5")
    config = Config()
    config.Settings.timeout = 3.0
    assert Settings(config=config).timeout == 3.0


@pytest.mark.slow
def test_the_kernel_takes_its_settings_from_the_command_line(installed_kernelspec):
    harness = KernelHarness.__new__(KernelHarness)
    from jupyter_client.manager import KernelManager

    harness.km = KernelManager(kernel_name="workshop")
    harness.km.start_kernel(env=clean_env(WORKSHOP_TIMEOUT="60"), extra_arguments=["--WorkshopKernel.timeout=1"])
    harness.kc = harness.km.client()
    harness.kc.start_channels()
    harness.kc.wait_for_ready(timeout=60)
    try:
        result = harness.run("sleep 20", timeout=30)
        assert result.status == "error"
        assert result.record["timed_out"] is True
        assert "1 s timeout" in result.stderr
    finally:
        harness.shutdown()


def test_a_locked_target_cannot_be_left(tmp_path, monkeypatch):
    """Attack: a submission re-run for grading says `%target local` (or names a
    target in its metadata) to escape the grader's target."""
    notebook = tmp_path / "escape.ipynb"
    notebook.write_text('{"cells": [], "metadata": {"workshop": {"target": "ssh://nobody@127.0.0.1:1"}}, '
                        '"nbformat": 4, "nbformat_minor": 5}')
    saved = NotebookFile(str(notebook))  # as the kernel finds it, in JPY_SESSION_NAME
    with Session(Settings(target="local", target_locked=True), notebook=saved) as session:
        assert session.target.spec == "local" and session.target_source == "WORKSHOP_TARGET"
        moved, _ = run(session, "%target ssh://nobody@127.0.0.1:1")
        assert moved.error is not None and "the target is fixed for this run" in moved.error.evalue
        assert session.target.spec == "local"
    with Session(Settings(), notebook=saved) as free:  # unlocked, the metadata counts
        assert free.target.spec == "ssh://nobody@127.0.0.1:1"
