"""The Jupyter kernel: parses a cell, applies magics, streams the shell's output.

The kernel is thin on purpose: the shell session (shell/) does the framing,
targets/ say where it runs, records.py says what is kept.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paramiko
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel
from traitlets import Float

from . import __version__
from .checks import (
    CheckSyntaxError,
    Expectation,
    ScriptCheck,
    expectation_result,
    script_result,
    split_checks,
)
from .magics import MagicError, load_all, lookup, split_cell
from .records import Record, StreamDigest, now
from .shell.channels import ChannelClosed, LocalChannel
from .shell.session import CellOutcome, ShellError, ShellSession
from .targets import Target, TargetError, parse_target

DEFAULT_OUTPUT_LIMIT = 8 * 1024 * 1024  # characters per stream per cell shown in the notebook
# Stream messages that may wait for ipykernel's IOPub thread before the shell's
# output is held back: the shell can print faster than messages leave, and an
# unbounded queue would grow with the output.
IOPUB_BACKLOG = 32
# Characters that end a word for completion purposes.
_WORD_BREAK = re.compile(r"[\s;|&<>()`'\"=]")


class OutputStream:
    """One of a cell's streams on its way to the frontend: decoded, digested, bounded."""

    def __init__(self, kernel: WorkshopKernel, name: str, digest: StreamDigest, limit: int, silent: bool):
        self.kernel = kernel
        self.name = name
        self.digest = digest
        self.limit = limit
        self.silent = silent
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write_bytes(self, data: bytes) -> None:
        self.digest.total_bytes += len(data)
        if self.digest.truncated:
            return
        self._show(self._decoder.decode(data))

    def write_text(self, text: str) -> None:
        """Text from the kernel itself (notices); never truncated."""
        self._send(text)

    def close(self) -> None:
        tail = self._decoder.decode(b"", final=True)
        if tail and not self.digest.truncated:
            self._show(tail)
        if self.digest.truncated:
            hidden = self.digest.total_bytes
            self._send(
                f"\n[workshop: output truncated: {self.limit} characters shown of "
                f"{hidden} bytes; the record counts all of it]\n"
            )

    def _show(self, text: str) -> None:
        if not text:
            return
        if self.limit and self.digest.shown_chars + len(text) > self.limit:
            text = text[: max(self.limit - self.digest.shown_chars, 0)]
            self.digest.truncated = True
        self._send(text)

    def _send(self, text: str) -> None:
        if not text:
            return
        self.digest.add_shown(text)
        if not self.silent:
            self.kernel.send_response(self.kernel.iopub_socket, "stream", {"name": self.name, "text": text})
            self.kernel.wait_for_iopub()


class CellContext:
    """What a magic or the shell needs while one cell runs."""

    def __init__(self, kernel: WorkshopKernel, record: Record, silent: bool, allow_stdin: bool):
        self.kernel = kernel
        self.record = record
        self.allow_stdin = allow_stdin
        self.stdout = OutputStream(kernel, "stdout", record.stdout, kernel.output_limit, silent)
        self.stderr = OutputStream(kernel, "stderr", record.stderr, kernel.output_limit, silent)
        self.outcome: CellOutcome | None = None
        self._after: list[Callable[[CellContext, CellOutcome | None], None]] = []
        self.expectations: list[Expectation] = []
        # set when a cell magic wrapped the body: it then runs in another shell
        # (inside unshare, chroot, a cgroup), whose failures bash cannot see
        self.wrapped = False
        self.check_scripts: list[ScriptCheck] = []

    def expect(self, expectation: Expectation) -> None:
        """Evaluate ``expectation`` once the cell ran (``%expect``)."""
        self.expectations.append(expectation)
        # checks read the streams' text, which is otherwise not kept
        self.record.stdout.keep_text = self.record.stderr.keep_text = True
        if expectation.kind == "exit":
            self.record.expected_exit = int(expectation.value)

    def print(self, text: str, stream: str = "stdout") -> None:
        (self.stdout if stream == "stdout" else self.stderr).write_text(text)

    def notice(self, text: str) -> None:
        self.record.notices.append(text)
        self.stderr.write_text(f"workshop: {text}\n")

    def after(self, hook: Callable[[CellContext, CellOutcome | None], None]) -> None:
        """Run ``hook(ctx, outcome)`` once the cell's shell code has finished,
        also when it failed or was interrupted (outcome is None if it never ran)."""
        self._after.append(hook)

    def run_hidden(self, code: str, timeout: float | None = 60) -> HiddenResult:
        """Run shell code in the kernel's shell without showing its output."""
        shell = self.kernel._ensure_shell(self)
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        outcome = shell.run(code, on_output=lambda stream, data: chunks[stream].append(data), timeout=timeout)
        if outcome.shell_ended:
            self.kernel.shell = None
        return HiddenResult(
            outcome.status,
            b"".join(chunks["stdout"]).decode("utf-8", "replace"),
            b"".join(chunks["stderr"]).decode("utf-8", "replace"),
        )


@dataclass
class HiddenResult:
    status: int
    stdout: str
    stderr: str


class CellFailed(Exception):
    def __init__(self, ename: str, evalue: str, status: int):
        super().__init__(evalue)
        self.ename = ename
        self.evalue = evalue
        self.status = status


class WorkshopKernel(Kernel):
    implementation = "workshop"
    implementation_version = __version__
    language = "bash"
    language_version = "5"
    language_info = {
        "name": "bash",
        "codemirror_mode": "shell",
        "mimetype": "text/x-sh",
        "file_extension": ".sh",
        "pygments_lexer": "bash",
    }
    banner = "Workshop: bash cells in a persistent shell, on this machine or over SSH"
    # ipykernel sleeps this long after each cell to let forwarded Python output
    # drain; this kernel forwards none, so the sleep is pure latency.
    _execute_sleep = Float(0.0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        load_all()
        self.target, self.target_source, self._target_error = _initial_target()
        self.cell_timeout: float | None = _env_float("WORKSHOP_TIMEOUT")
        self.output_limit = DEFAULT_OUTPUT_LIMIT
        limit = os.environ.get("WORKSHOP_OUTPUT_LIMIT", "")
        if limit.strip().isdigit():
            self.output_limit = int(limit)
        elif limit:
            self.log.warning("WORKSHOP_OUTPUT_LIMIT=%r is not a number of characters; using %d", limit,
                             DEFAULT_OUTPUT_LIMIT)
        self.records_enabled = os.environ.get("WORKSHOP_RECORDS", "1") != "0"
        self.shell: ShellSession | None = None
        self._ssh = None
        self._ended_notice: str | None = None
        self._last_record: dict | None = None
        self.cleanups: dict[str, str] = {}
        # True while the main thread blocks in a wait that only an exception can
        # end (the input box, a VM booting): an interrupt then raises KeyboardInterrupt.
        self._in_blocking_wait = False
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not in the main thread (embedded use)
            pass

    def wait_for_iopub(self, patience: float = 10.0) -> None:
        """Hold output back while ipykernel's IOPub thread is behind, so memory
        stays bounded however much a cell prints (the queue is ipykernel's own)."""
        queue = getattr(self.iopub_thread, "_events", None)
        if queue is None or len(queue) <= IOPUB_BACKLOG:
            return
        deadline = time.monotonic() + patience  # a stuck thread must not stop the kernel
        while len(queue) > IOPUB_BACKLOG and time.monotonic() < deadline:
            time.sleep(0.0005)

    # ---- cleanup of what magics made --------------------------------------
    def register_cleanup(self, key: str, shell_code: str) -> None:
        """Shell code that undoes something a magic made (a mount, a cgroup...);
        run by %cleanup, at shutdown and at restart, newest first."""
        self.cleanups[key] = shell_code

    def forget_cleanup(self, key: str) -> None:
        self.cleanups.pop(key, None)

    def run_cleanups(self, ctx: CellContext | None = None) -> list[str]:
        """Run every registered cleanup; return the keys that failed."""
        failed = []
        for key in reversed(list(self.cleanups)):
            code = self.cleanups[key]
            try:
                if ctx is not None:
                    result = ctx.run_hidden(code)
                else:
                    record = Record(None, 0, "", {}, now(), "")
                    result = CellContext(self, record, True, False).run_hidden(code)
            except (TargetError, ShellError):
                failed.append(key)
                continue
            if result.status == 0:
                del self.cleanups[key]
            else:
                failed.append(key)
        return failed

    def _cleanup_if_alive(self) -> None:
        """Cleanups when leaving a target.  Only through a live shell: what a
        dead shell's magics made went with it (or with its machine), and a
        stopped VM must not be booted again just to clean it."""
        if not self.cleanups:
            return
        if self.shell is None or not self.shell.alive:
            self.cleanups.clear()
            return
        try:
            self.run_cleanups()
        except Exception:
            self.log.warning("cleanup failed", exc_info=True)

    # ---- targets and the shell -------------------------------------------
    def switch_target(self, target: Target, source: str) -> None:
        self._cleanup_if_alive()
        self._close_shell()
        self.target, self.target_source = target, source
        self._ended_notice = None
        self._target_error = None

    def _ensure_shell(self, ctx: CellContext) -> ShellSession:
        if self.shell is not None and self.shell.alive:
            return self.shell
        if self._target_error:
            raise TargetError(self._target_error)
        self._close_shell(quiet=True)
        self._prepare_target(ctx)
        factory = self._channel_factory()
        shell = ShellSession(factory)
        try:
            shell.start()
        except (ShellError, ChannelClosed, OSError, paramiko.SSHException) as exc:
            shell.close()
            reason = str(exc) or type(exc).__name__
            raise TargetError(f"could not start a shell on {self.target.describe()}: {reason}") from None
        self.shell = shell
        if self._ended_notice:
            ctx.notice(
                f"started a new shell on {self.target.describe()} ({self._ended_notice}); "
                "cwd, variables and functions from the old shell are gone"
            )
            self._ended_notice = None
        return shell

    def _prepare_target(self, ctx: CellContext) -> None:
        """Let the target get ready (a qemu VM boots on first use); its progress
        shows in the cell as one display that updates in place."""
        display_id = f"workshop-prepare-{os.getpid()}-{id(ctx)}"
        shown: list[str] = []

        def progress(text: str) -> None:
            if ctx.stdout.silent:
                return
            content = {
                "data": {"text/plain": f"{self.target.spec}: {text}"},
                "metadata": {},
                "transient": {"display_id": display_id},
            }
            self.send_response(self.iopub_socket, "update_display_data" if shown else "display_data", content)
            shown.append(text)

        self._in_blocking_wait = True
        try:
            self.target.prepare(progress)
        except KeyboardInterrupt:
            raise TargetError(
                f"{self.target.spec}: interrupted while getting ready (a VM that was booting was stopped); "
                "run a cell again to start it"
            ) from None
        finally:
            self._in_blocking_wait = False

    def _channel_factory(self):
        if self.target.is_local:
            return lambda command: LocalChannel(command)
        from .targets.ssh import SSHConnection

        if self._ssh is None or self._ssh.target is not self.target:
            if self._ssh is not None:
                self._ssh.close()
            self._ssh = SSHConnection(self.target)
        self._ssh.connect()  # raises TargetError with a clear message
        return self._ssh.channel

    def _close_shell(self, quiet: bool = False) -> None:
        if self.shell is not None:
            try:
                self.shell.close()
            except Exception:
                self.log.debug("closing the shell failed", exc_info=True)
            self.shell = None
        if not quiet and self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    # ---- execution -------------------------------------------------------
    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: dict | None = None,
        cell_id: str | None = None,
    ) -> dict:
        record = Record(
            cell_id=cell_id,
            execution_count=self.execution_count,
            session=self.session.session if self.session else "",
            target=self.target.as_record(),
            started=now(),
            source=code,
        )
        ctx = CellContext(self, record, silent, allow_stdin)
        self._allow_stdin = allow_stdin  # what raw_input/getpass consult
        error: CellFailed | None = None
        try:
            self._execute(ctx, code)
        except CellFailed as exc:
            error = exc
        except MagicError as exc:
            error = CellFailed("MagicError", str(exc), 2)
        except TargetError as exc:
            error = CellFailed("TargetError", str(exc), 255)
        except Exception as exc:  # a bug of ours: still a record and a usable kernel
            self.log.error("cell failed inside the kernel", exc_info=True)
            error = CellFailed("InternalError", f"{type(exc).__name__}: {exc}", 1)
        ctx.stdout.close()
        ctx.stderr.close()
        if error is not None:
            record.exit_status = error.status
        self._evaluate_checks(ctx, error)
        if error is None and os.environ.get("WORKSHOP_FAILED_CHECK") == "error":
            failed = [c for c in record.checks if not c["passed"]]
            if failed:
                text = "; ".join(f"{c['name']}: {c['message']}" for c in failed)
                error = CellFailed("CheckFailed", f"failed checks: {text}", record.exit_status)
        record.duration = (now() - record.started).total_seconds()
        record.target = self.target.as_record()
        data = record.as_dict()
        self._last_record = data
        if error is not None and not silent:
            self.send_response(
                self.iopub_socket,
                "error",
                {"ename": error.ename, "evalue": error.evalue, "traceback": [_red(error.evalue)]},
            )
        if self.records_enabled and not silent:
            self.send_response(
                self.iopub_socket,
                "display_data",
                {"data": record.bundle(), "metadata": {}, "transient": {}},
            )
        if error is not None:
            return {
                "status": "error",
                "execution_count": self.execution_count,
                "ename": error.ename,
                "evalue": error.evalue,
                "traceback": [_red(error.evalue)],
            }
        return {
            "status": "ok",
            "execution_count": self.execution_count,
            "payload": [],
            "user_expressions": {},
        }

    def _execute(self, ctx: CellContext, code: str) -> None:
        try:
            code, ctx.check_scripts = split_checks(code)
        except CheckSyntaxError as exc:
            raise MagicError(str(exc)) from None
        line_magics, cell_magics, body = split_cell(code)
        magics = [(lookup(call), call) for call in line_magics + cell_magics]  # usage errors first
        ctx.record.magics.extend(call.line for _, call in magics)
        try:
            for magic, call in magics:
                if not magic.cell:
                    magic.run(ctx, call)
            # Cell magics wrap the body, innermost (last written) first.
            for magic, call in reversed(magics):
                if magic.cell:
                    body = magic.run(ctx, call, body)
                    ctx.wrapped = True
            if body.strip():
                self._run_body(ctx, body)
        finally:
            for hook in ctx._after:
                try:
                    hook(ctx, ctx.outcome)
                except (MagicError, TargetError, ShellError) as exc:
                    ctx.notice(str(exc))

    def _run_body(self, ctx: CellContext, body: str) -> None:
        shell = self._ensure_shell(ctx)
        on_input = self._input if ctx.allow_stdin else None
        try:
            outcome = shell.run(
                body,
                on_output=lambda stream, data: (ctx.stdout if stream == "stdout" else ctx.stderr).write_bytes(data),
                on_input=on_input,
                timeout=self.cell_timeout,
            )
        except ShellError as exc:
            self._close_shell(quiet=True)
            raise TargetError(str(exc)) from None
        ctx.outcome = outcome
        self._finish(ctx, body, outcome)

    def _finish(self, ctx: CellContext, body: str, outcome: CellOutcome) -> None:
        record = ctx.record
        record.exit_status = outcome.status
        record.interrupted = outcome.interrupted
        record.timed_out = outcome.timed_out
        # a wrapped body's only command the shell saw is the wrapper: not the student's
        record.failed_commands = [] if ctx.wrapped else _failed_commands(outcome, body)
        if outcome.timed_out:
            ctx.notice(f"the cell ran past the {self.cell_timeout:g} s timeout and was interrupted")
        if outcome.shell_ended:
            self.shell = None
            self._ended_notice = outcome.shell_ended
            ctx.notice(
                f"{outcome.shell_ended}; the next cell starts a new shell "
                "(cwd, variables and functions are lost)"
            )
        if outcome.status != record.expected_exit:
            text = _error_text(outcome, record.failed_commands)
            if record.expected_exit:
                text += f" (expected {record.expected_exit})"
            raise CellFailed("CellError", text, outcome.status)

    def _evaluate_checks(self, ctx: CellContext, error: CellFailed | None) -> None:
        """Run the cell's %%check scripts, then its %expect lines; results go in the record."""
        record = ctx.record
        outcome = ctx.outcome
        scripts = []
        for check in ctx.check_scripts:
            points = 1 if check.points is None else check.points
            note = ""
            if error is not None and error.ename in ("MagicError", "TargetError"):
                note = f"not run: the cell failed before its code ran ({error.ename})"
            elif outcome is not None and (outcome.interrupted or outcome.timed_out):
                note = "not run: the cell was interrupted"
            elif outcome is not None and outcome.shell_ended:
                note = "not run: the shell ended"
            if note:
                scripts.append(script_result(check, 1, "", points, note))
                continue
            try:
                result = ctx.run_hidden(f"(\n{check.script}\n)", timeout=self.cell_timeout or 60)
            except (TargetError, ShellError) as exc:
                scripts.append(script_result(check, 255, "", points, f"not run: {exc}"))
                continue
            output = result.stdout + (("\n" if result.stdout and not result.stdout.endswith("\n") else "")
                                      + result.stderr if result.stderr else "")
            scripts.append(script_result(check, result.status, output, points))
        for expectation in ctx.expectations:
            record.checks.append(
                expectation_result(expectation, record.exit_status, record.stdout.text, record.stderr.text)
            )
        record.checks.extend(scripts)

    def _input(self, prompt: str, password: bool) -> str | None:
        try:
            self._in_blocking_wait = True
            return self.getpass(prompt) if password else self.raw_input(prompt)
        except (EOFError, KeyboardInterrupt):
            return None
        except Exception:  # StdinNotImplementedError and friends: behave as EOF
            self.log.warning("input request failed", exc_info=True)
            return None
        finally:
            self._in_blocking_wait = False

    def finish_metadata(self, parent, metadata, reply_content):
        metadata = super().finish_metadata(parent, metadata, reply_content)
        if self._last_record is not None:
            metadata["workshop"] = self._last_record
            self._last_record = None
        return metadata

    # ---- interrupts ------------------------------------------------------
    def _interrupt(self) -> None:
        shell = self.shell
        if shell is not None:
            shell.interrupt()

    def _on_sigint(self, signum, frame) -> None:
        # Signal handlers must not block on the locks the reading thread holds.
        threading.Thread(target=self._interrupt, daemon=True).start()
        if self._in_blocking_wait:
            # ipykernel waits for an input reply until a KeyboardInterrupt, and a
            # booting VM until it is up: the interrupt ends the wait.
            raise KeyboardInterrupt

    async def interrupt_request(self, stream, ident, parent):
        self._interrupt()
        if self._in_blocking_wait:
            os.kill(os.getpid(), signal.SIGINT)  # to end the wait in the main thread
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    # ---- completion and is_complete ------------------------------------
    async def do_complete(self, code: str, cursor_pos: int) -> dict:
        head = code[:cursor_pos]
        match = list(_WORD_BREAK.finditer(head))
        start = match[-1].end() if match else 0
        token = head[start:]
        matches: list[str] = []
        if token:
            matches = self._complete_on_target(token)
        return {
            "status": "ok",
            "matches": matches,
            "cursor_start": start,
            "cursor_end": cursor_pos,
            "metadata": {},
        }

    def _complete_on_target(self, token: str) -> list[str]:
        from .shell.framing import quote_posix

        chunks: list[bytes] = []
        try:
            shell = self.shell if self.shell is not None and self.shell.alive else None
            if shell is None and self.target.kind not in ("local", "ssh", "ssh-config"):
                return []  # never boot a VM for a Tab key
            if shell is None:
                record = Record(None, 0, "", {}, now(), "")
                shell = self._ensure_shell(CellContext(self, record, True, False))
            shell.run(
                f"__ws_complete {quote_posix(token)}",
                on_output=lambda stream, data: chunks.append(data) if stream == "stdout" else None,
                timeout=5,
            )
        except (TargetError, ShellError):
            return []
        seen: dict[str, None] = {}
        for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
            if line.startswith(token) and line not in seen:
                seen[line] = None
        return list(seen)

    async def do_is_complete(self, code: str) -> dict:
        return is_complete(code)

    # ---- shutdown --------------------------------------------------------
    async def do_shutdown(self, restart: bool) -> dict:
        self._cleanup_if_alive()
        self._close_shell()
        return {"status": "ok", "restart": restart}


def is_complete(code: str) -> dict:
    """Ask the local bash whether ``code`` parses (for `jupyter console`)."""
    stripped = code.strip()
    if not stripped or stripped.startswith("%"):
        return {"status": "complete"}
    if code.rstrip("\n").endswith("\\"):
        return {"status": "incomplete", "indent": ""}
    try:
        done = subprocess.run(
            ["bash", "-n"], input=code.encode(), capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {"status": "unknown"}
    message = done.stderr.decode(errors="replace")
    # bash only warns about an unfinished heredoc; a console should wait for more.
    if "unexpected end of file" in message or "unexpected EOF" in message or "here-document" in message:
        return {"status": "incomplete", "indent": ""}
    return {"status": "complete" if done.returncode == 0 else "invalid"}


def _failed_commands(outcome: CellOutcome, body: str) -> list[dict]:
    failed = list(outcome.failed_commands)
    # The cell's own `eval` is reported last when the cell fails; it is not a
    # command the student wrote.
    if failed and failed[-1].command.startswith("builtin eval ") and len(failed[-1].command) >= len(body):
        failed.pop()
    return [{"line": f.line, "status": f.status, "command": f.command} for f in failed]


def _error_text(outcome: CellOutcome, failed: list[dict]) -> str:
    if outcome.timed_out:
        head = f"timed out (exit status {outcome.status})"
    elif outcome.interrupted:
        head = f"interrupted (exit status {outcome.status})"
    elif outcome.shell_ended:
        head = f"{outcome.shell_ended}"
    else:
        head = f"exit status {outcome.status}"
    if failed:
        listed = "; ".join(f"line {f['line']}: {f['command']} (exit {f['status']})" for f in failed[:5])
        head += f"; failed commands: {listed}"
    return head


def _red(text: str) -> str:
    return f"\x1b[0;31m{text}\x1b[0m"


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _initial_target() -> tuple[Target, str, str | None]:
    """Notebook metadata, then WORKSHOP_TARGET, then local (``%target`` overrides all).

    A bad spec is not dropped silently: the first cell reports it (third item).
    """
    local = parse_target("local")
    candidates = []
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook and notebook.endswith(".ipynb") and os.path.exists(notebook):
        try:
            import nbformat

            nb = nbformat.read(notebook, as_version=4)
            spec = nb.metadata.get("workshop", {}).get("target")
            if spec:
                candidates.append((spec, "notebook metadata"))
        except Exception:  # an unreadable notebook is the frontend's problem, not ours
            pass
    if os.environ.get("WORKSHOP_TARGET"):
        candidates.append((os.environ["WORKSHOP_TARGET"], "WORKSHOP_TARGET"))
    for spec, source in candidates:
        try:
            return parse_target(spec), source, None
        except TargetError as exc:
            return local, source, f"the target from {source} is not usable: {exc}; fix it or choose one with %target SPEC"
    return local, "default", None


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _UnencryptedTCPNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "without encryption" not in record.getMessage()


class WorkshopKernelApp(IPKernelApp):
    """ipykernel's app, without its warning about unencrypted TCP when the
    kernel's ports are on loopback (as Jupyter and `workshop run` start it): it
    would print on every headless run, and only this machine's own users can
    reach those ports. Elsewhere the warning stays."""

    def init_sockets(self) -> None:
        notice = _UnencryptedTCPNotice()
        if self.ip in LOOPBACK:
            self.log.addFilter(notice)
        try:
            super().init_sockets()
        finally:
            self.log.removeFilter(notice)


def main() -> None:
    # The kernel writes nothing to Python's stdout, so no OutStream forwarding:
    # it saves two threads, and ipykernel's control thread can otherwise hang at
    # shutdown flushing a stream whose I/O thread has already stopped.
    WorkshopKernelApp.launch_instance(kernel_class=WorkshopKernel, outstream_class=None)


if __name__ == "__main__":
    main()
