"""Cells that fight the stop button, kill their own shell or leave processes
behind: each is stopped cleanly, reported, and leaves nothing running."""

from __future__ import annotations

import os
import queue
import random
import socket
import subprocess
import threading
import time

import pytest
from harness import KernelHarness, clean_env

from workshop.records import StreamDigest, fold_overwrites

pytestmark = pytest.mark.slow


def _interrupt_after(kernel, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, kernel.interrupt)
    timer.start()
    return timer


def _running(pattern: str) -> str:
    return subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout.strip()


def test_an_ignored_sigint_in_one_cell_does_not_disarm_the_stop_button_later(shared_kernel):
    kernel = shared_kernel
    assert kernel.run("trap '' INT").status == "ok"
    _interrupt_after(kernel, 1.0)
    started = time.monotonic()
    result = kernel.run("sleep 30; echo AFTER")
    assert time.monotonic() - started < 10
    assert "AFTER" not in result.stdout
    assert result.record["interrupted"] is True
    assert kernel.run("echo fine").stdout == "fine\n"


@pytest.mark.parametrize("command", ["timeout 47 sleep 47", "setsid sleep 48", "setsid -w sleep 49"])
def test_commands_that_leave_the_process_group_are_stopped_and_the_shell_kept(shared_kernel, command):
    kernel = shared_kernel
    kernel.run("export KEPT=yes")
    _interrupt_after(kernel, 1.0)
    started = time.monotonic()
    result = kernel.run(command)
    assert time.monotonic() - started < 10, "the interrupt did not stop the command"
    assert result.record["interrupted"] is True
    assert kernel.run("echo $KEPT").stdout == "yes\n", "the shell and its state were lost"
    time.sleep(0.5)
    assert _running(f"^sleep {command.split()[-1]}$") == "", f"{command} keeps running"


def test_a_cell_that_kills_its_own_shell_ends_at_once(shared_kernel):
    """A background job kills the shell while a foreground child keeps the
    output pipes open: the cell must not wait for that child."""
    kernel = shared_kernel
    started = time.monotonic()
    result = kernel.run("(sleep 1; kill -9 $$) & sleep 15", timeout=30)
    assert time.monotonic() - started < 8
    assert result.status == "error"
    assert "the shell ended" in result.stderr and "connection" not in result.stderr
    assert "the next cell starts a new shell" in result.stderr
    nxt = kernel.run("echo back")
    assert nxt.stdout == "back\n" and "new shell" not in nxt.stderr  # said once, above
    time.sleep(0.5)
    assert _running("^sleep 15$") == ""


def test_background_jobs_end_with_the_kernel(installed_kernelspec, sshd):
    for target in ("local", sshd.url):
        tag = random.randint(100000, 999999)  # this run's own processes
        pattern = f"^sleep {tag}[123]$"
        kernel = KernelHarness(clean_env(WORKSHOP_TARGET=target))
        result = kernel.run(f"sleep {tag}1 & setsid sleep {tag}2 & nohup sleep {tag}3 >/dev/null 2>&1 & echo started")
        assert result.stdout == "started\n"
        time.sleep(0.3)
        assert _running(pattern).count("\n") == 2, "the jobs did not start"
        kernel.shutdown()
        deadline = time.monotonic() + 10
        while _running(pattern) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _running(pattern) == "", f"jobs outlived the {target} kernel"


@pytest.mark.timeout(60)
def test_carriage_return_folding_is_linear():
    """A 2 MB line followed by 200,000 carriage returns (a progress bar gone
    wild, or a hostile submission) folds in one pass, live and in the grader."""
    text = "x" * 2_000_000 + "\ry" * 200_000 + "\n"
    digest = StreamDigest()
    for start in range(0, len(text), 65536):
        digest.add_shown(text[start : start + 65536])
    assert digest.normalized_hexdigest() is not None
    assert fold_overwrites(text) == "y" + "x" * 1_999_999 + "\n"


def test_a_kernel_whose_port_was_taken_meanwhile_ends_with_a_sentence_instead_of_hanging(installed_kernelspec, tmp_path):
    """jupyter_client picks a kernel's ports before the kernel binds them; another
    process may take one in between. ipykernel would then hang alive and deaf for
    ever (its context waits for the sockets it did bind); the kernel ends, so a
    Jupyter server's restarter can start it again on new ports."""
    from jupyter_client import KernelManager

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        km = KernelManager(kernel_name="workshop", cache_ports=False)  # keep the port set here
        km.iopub_port = taken.getsockname()[1]
        log = tmp_path / "stderr"
        with open(log, "wb") as err:
            km.start_kernel(env=clean_env(), stderr=err)
        try:
            deadline = time.monotonic() + 30
            while km.is_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not km.is_alive(), "the kernel hangs on a port it cannot bind"
        finally:
            km.shutdown_kernel(now=True)
    text = log.read_text()
    assert "workshop kernel: cannot listen on the ports of its connection file" in text
    assert "Address already in use" in text and "start the kernel again" in text


# Loaded before the kernel (a sitecustomize on its PYTHONPATH): the control thread
# waits a second before it publishes the shutdown request's `idle`, so the race with
# the main thread's exit, rare by itself, happens every time.
_SLOW_IDLE_AFTER_SHUTDOWN = '''
import time
from ipykernel.kernelbase import Kernel

_publish = Kernel._publish_status_and_flush

def _late(self, status, channel, stream, parent=None):
    if channel == "control" and status == "idle" and self._shutdown_message is not None:
        time.sleep(1.0)
    return _publish(self, status, channel, stream, parent)

Kernel._publish_status_and_flush = _late
'''


def test_the_shutdown_requests_idle_arrives_and_the_kernel_exits_cleanly(installed_kernelspec, tmp_path):
    """After the shutdown reply, ipykernel's control thread still publishes `idle` while
    the main thread runs the exit functions that close every socket.  A socket closed
    under a sending thread aborted the kernel (libzmq's `pfd.revents & POLLIN`, SIGABRT,
    once in CI) or lost the `idle` a client waits for.  The kernel lets the control
    thread finish first: with that thread held back a second, both arrive."""
    (tmp_path / "sitecustomize.py").write_text(_SLOW_IDLE_AFTER_SHUTDOWN)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    kernel = KernelHarness(clean_env(WORKSHOP_TARGET="local", PYTHONPATH=path))
    assert kernel.run("echo up").stdout == "up\n"
    process = kernel.km.provisioner.process
    request = kernel.kc.shutdown()
    states = []
    deadline = time.monotonic() + 30
    while "idle" not in states and time.monotonic() < deadline:
        try:
            msg = kernel.kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if msg["parent_header"].get("msg_id") == request and msg["msg_type"] == "status":
            states.append(msg["content"]["execution_state"])
    kernel.km.shutdown_wait_time = 30.0
    kernel.shutdown()
    assert states == ["busy", "idle"], f"the shutdown request's status messages: {states}"
    assert process.returncode == 0, f"the kernel did not exit by itself: status {process.returncode}"
