"""The session: one target, one persistent shell, cells in, records out.

A :class:`Session` knows nothing of Jupyter.  It owns where cells run (the
target and its connection), the shell on it, what magics made and must undo
(cleanups), their state between cells, and the cell timeout.  ``run_cell``
runs one cell to a :class:`~workshop.records.Record`, passing output to a
callback as it arrives.  The kernel is a thin adapter over it; anything else
(a benchmark, a test, a script) can drive it the same way::

    session = Session(Settings())
    run = session.run_cell("echo hi", on_output=lambda stream, text: print(text, end=""))
    run.record.exit_status, run.error
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import re
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import cell as cell_grammar
from . import magics
from .checks import describe_changes, expectation_result, script_result, split_checks
from .cut_output import SavedStream, Tail, saved_path
from .errors import MagicError, ShellError, TargetError, WorkshopError
from .magics.context import CellContext
from .offers import Offers
from .records import CHECKS_FAILED, Record, StreamDigest, now
from .settings import Settings
from .shell.channels import Transport
from .shell.clean import DUMP_VARIABLES, check_command, check_program, collect, parse_variables, stop_command
from .shell.leftovers import parse_sweep, sweep_script
from .shell.persistent import InputCallback, PersistentShell
from .shell.result import CommandResult
from .targets import Target, parse_target
from .tasks import VOUCHED, record_task
from .text import Notice

OutputSink = Callable[[str, str], None]  # ("stdout"|"stderr", text)
ProgressSink = Callable[[str], None]  # a step of getting the target ready
DisplaySink = Callable[[str, str], None]  # (file name, base64 data): the shell's `display FILE`

log = logging.getLogger("workshop")


class OutputStream:
    """One of a cell's streams on its way to the user: decoded, digested, bounded.

    Past ``limit`` characters the stream is cut (see cut_output): a line says so at
    once, the whole stream goes to a file when ``save_to`` gives one, and its end
    is shown when the cell ends.
    """

    def __init__(self, name: str, digest: StreamDigest, limit: int, sink: OutputSink | None,
                 save_to: Callable[[], Path] | None = None):
        self.name = name
        self.digest = digest
        self.limit = limit
        self.sink = sink
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._save_to = save_to
        self._head: list[str] | None = [] if save_to and limit else None  # shown so far, for the file
        self._tail = Tail()
        self._saved: SavedStream | None = None

    def write_bytes(self, data: bytes) -> None:
        self.digest.total_bytes += len(data)
        self._show(self._decoder.decode(data))

    def write_text(self, text: str) -> None:
        """Text from workshop itself (notices); never truncated."""
        self._send(text)

    def close(self) -> None:
        self._show(self._decoder.decode(b"", final=True))
        if not self.digest.truncated:
            return
        if self._saved is not None:
            self._saved.close()
        where = f"; all of it is in {self._saved.path}" if self._saved else ""
        self._send(f"\n[workshop: output truncated: {self._tail.dropped:,} characters not shown{where}; "
                   f"its last {len(self._tail.text()):,} follow]\n")
        self._send(self._tail.text())
        self._send(f"\n[workshop: {self.digest.total_bytes:,} bytes in all; the record counts all of it]\n")

    def _show(self, text: str) -> None:
        if not text:
            return
        if self.digest.truncated:
            self._tail.add(text)
            if self._saved is not None:
                self._saved.write(text)
            return
        if self.limit and self.digest.shown_chars + len(text) > self.limit:
            cut = max(self.limit - self.digest.shown_chars, 0)
            self._shown(text[:cut])
            self._cut(text[cut:])
            return
        self._shown(text)

    def _shown(self, text: str) -> None:
        self._send(text)
        if self._head is not None:
            self._head.append(text)

    def _cut(self, rest: str) -> None:
        self.digest.truncated = True
        head, self._head = self._head, None
        if self._save_to is not None and head is not None:
            try:
                self._saved = SavedStream(self._save_to())
                for part in head:
                    self._saved.write(part)
            except OSError as exc:
                log.warning("could not save the cut output: %s", exc)
                self._saved = None
        self._tail.add(rest)
        if self._saved is not None:
            self._saved.write(rest)
        where = f"; all of it is being saved in {self._saved.path}" if self._saved else ""
        self._send(f"\n[workshop: output cut here, at {self.limit:,} characters{where}; "
                   f"its end is shown when the cell ends]\n")

    def _send(self, text: str) -> None:
        if not text:
            return
        self.digest.add_shown(text)
        if self.sink is not None:
            self.sink(self.name, text)


@dataclass
class CellFailure:
    """Why a cell is an error: what the user sees in red and the exit status kept."""

    ename: str  # CellError, MagicError, TargetError, CheckFailed, InternalError
    evalue: str
    status: int


class _Failed(Exception):
    def __init__(self, failure: CellFailure):
        super().__init__(failure.evalue)
        self.failure = failure


@dataclass
class CellRun:
    record: Record
    error: CellFailure | None = None


class SavedNotebook(Protocol):
    """The notebook file a front end found for this session (the kernel's:
    :mod:`workshop.notebook_file`); the session reads no file of its own."""

    path: str  # where it is saved
    def target(self) -> str | None: ...  # its metadata.workshop.target
    def cell(self, cell_id: str) -> dict | None: ...  # a saved cell, by id


class Session:
    """Runs cells on one target at a time; see the module docstring."""

    def __init__(self, settings: Settings | None = None, *, notebook: SavedNotebook | None = None,
                 blocking_wait: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 default_timeout: float | None = None):
        self.settings = settings or Settings()
        self.notebook = notebook
        # the timeout set (settings, %timeout; 0: none), else ``default_timeout`` (a notebook's)
        self._timeout: float | None = self.settings.timeout or None
        self._default_timeout = (default_timeout or None) if self.settings.timeout is None else None
        # Waits that only an exception ends (the input box, a VM booting): the
        # kernel marks them so that an interrupt can raise KeyboardInterrupt.
        self.blocking_wait = blocking_wait
        self.target, self.target_source, self._target_error = initial_target(self.settings, notebook.target() if notebook else None)
        self.shell: PersistentShell | None = None
        self._transport: Transport | None = None
        self._transport_to: tuple = ()  # where the transport connects (host, port, user, key)
        self._ended_notice: str | None = None
        self._told_unordered = False
        self._cleanups: dict[str, str] = {}
        self._cleanup_files: dict[str, str] = {}  # key -> its file on the target
        self._notices: list[str] = []  # for the next cell to show (found outside a cell)
        self._state: dict[str, Any] = {}
        self._progress: ProgressSink | None = None
        self._display: DisplaySink | None = None  # where the running cell's `display` goes
        self._stop_checks = threading.Event()  # set by interrupt(): stops this cell's checks
        self._running_check: str | None = None  # the tag of the check running now
        self._isolated = False  # the cell running now runs in a subshell (a grading rerun)
        # characters per stream shown, when the front end knows better than the settings (a browser's)
        self.shown_limit: int | None = None
        self._busy = threading.Lock()  # held while a cell runs: Tab asks the shell between cells only
        self.offers = Offers(self._files, self.ask, lambda: self.shell.flavour if self.shell else "sh")
        magics.load_all()

    @property
    def timeout(self) -> float | None:
        """Seconds a cell may run; None: no limit."""
        return self._default_timeout or self._timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self._timeout, self._default_timeout = seconds or None, None

    @property
    def timeout_is_default(self) -> bool:
        return self._default_timeout is not None

    # ---- a cell ----------------------------------------------------------------
    def run_cell(self, code: str, *, on_output: OutputSink | None = None, on_input: InputCallback | None = None,
                 on_progress: ProgressSink | None = None, cell_id: str | None = None,
                 execution_count: int = 0, session_id: str = "", cell_meta: dict | None = None,
                 on_display: DisplaySink | None = None) -> CellRun:
        """Run one cell; its output goes to ``on_output`` as it comes (None: not shown).
        ``cell_meta``: the execute request's metadata (a task cell's record says so)."""
        shell = self.shell
        try:
            with self._busy:
                return self._run_cell(code, on_output=on_output, on_input=on_input, on_progress=on_progress,
                                      cell_id=cell_id, execution_count=execution_count, session_id=session_id,
                                      cell_meta=cell_meta, on_display=on_display)
        finally:
            self.offers.stale(new_shell=self.shell is not shell)

    def _run_cell(self, code: str, *, on_output: OutputSink | None, on_input: InputCallback | None,
                  on_progress: ProgressSink | None, cell_id: str | None, execution_count: int, session_id: str,
                  cell_meta: dict | None, on_display: DisplaySink | None) -> CellRun:
        record = Record(cell_id=cell_id, execution_count=execution_count, session=session_id,
                        target=self.target.as_record(), started=now(), source=code, extra=record_task(cell_meta, self.notebook.cell if self.notebook else None))
        limit = self.settings.output_limit if self.shown_limit is None else self.shown_limit
        # a cut stream is saved where the student can open it; a grading rerun saves none
        saving = on_output is not None and not self.settings.target_locked
        streams = {name: OutputStream(name, getattr(record, name), limit, on_output,
                                      self._saver(execution_count, name) if saving else None)
                   for name in ("stdout", "stderr")}
        ctx = CellContext(self, record, lambda stream, text: streams[stream].write_text(text))
        # the runner of a grading rerun vouches for the instructor's cells; the rest run isolated
        self._isolated = self.settings.isolate_cells and not (cell_meta or {}).get(VOUCHED)
        self._progress, self._display = on_progress, on_display
        self._stop_checks.clear()
        error: CellFailure | None = None
        try:
            self._execute(ctx, code, streams, on_input)
        except _Failed as exc:
            error = exc.failure
        except MagicError as exc:
            error = CellFailure("MagicError", str(exc), 2)
        except TargetError as exc:
            error = CellFailure("TargetError", str(exc), 255)
        except Exception as exc:  # a bug of ours: still a record and a usable session
            log.error("cell failed inside workshop", exc_info=True)
            error = CellFailure("InternalError", f"{type(exc).__name__}: {exc}", 1)
        finally:
            self._progress = None
        for stream in streams.values():
            stream.close()
        if error is not None:
            record.exit_status = error.status
        self._evaluate_checks(ctx, error)
        error = error or self._failed_check_error(record)
        record.duration = (now() - record.started).total_seconds()
        record.target = self.target.as_record()
        return CellRun(record, error)

    def _saver(self, execution_count: int, stream: str) -> Callable[[], Path]:
        return lambda: saved_path(self.settings.saved_output_dir, execution_count, stream)

    def _execute(self, ctx: CellContext, code: str, streams: dict[str, OutputStream],
                 on_input: InputCallback | None) -> None:
        code, ctx.check_scripts = split_checks(code)
        line_magics, cell_magics, body = cell_grammar.split_cell(code, magics.names())
        written = line_magics + cell_magics
        calls = [(magics.lookup(call), call) for call in written]
        ctx.record.shown = not (written and not body.strip() and not ctx.check_scripts
                                and all(magic.text_only for magic, _ in calls))
        parsed = [(magic, magic.parse(call)) for magic, call in calls]  # usage errors first
        ctx.record.magics.extend(call.line for _, call in calls)
        try:
            for magic, args in parsed:
                if not magic.cell:
                    magic.run(ctx, args)
            for magic, args in reversed(parsed):  # cell magics wrap the body, innermost first
                if magic.cell:
                    body = magic.run(ctx, args, body)
                    ctx.wrapped = True
            if body.strip():
                self._run_body(ctx, body, streams, on_input)
        finally:
            ctx.run_after_hooks(lambda exc: self._hook_failed(ctx, exc))
            while self._notices:
                ctx.notice(self._notices.pop(0))

    @staticmethod
    def _hook_failed(ctx: CellContext, exc: Exception) -> None:
        if not isinstance(exc, WorkshopError):
            log.error("a magic's after-hook failed", exc_info=exc)
        ctx.notice(str(exc))

    def _run_body(self, ctx: CellContext, body: str, streams: dict[str, OutputStream],
                  on_input: InputCallback | None) -> None:
        shell = self._ensure_shell(ctx)
        try:
            outcome = shell.run(body, on_output=lambda stream, data: streams[stream].write_bytes(data),
                                on_input=on_input, timeout=self.timeout, isolated=self._isolated,
                                on_display=self._display)
        except ShellError as exc:
            self._close_shell(keep_connection=True)
            raise TargetError(str(exc)) from None
        ctx.outcome = outcome
        self._finish(ctx, body, outcome)

    def _finish(self, ctx: CellContext, body: str, outcome: CommandResult) -> None:
        record = ctx.record
        record.exit_status = outcome.status
        record.interrupted = outcome.interrupted
        record.timed_out = outcome.timed_out
        # a wrapped body's only command the shell saw is the wrapper: not the student's
        record.failed_commands = [] if ctx.wrapped else _failed_commands(outcome, body)
        if outcome.timed_out:
            ctx.notice(self._timed_out_notice())
        if outcome.stray_output:
            record.extra["stray_output"] = outcome.stray_output
            ctx.notice(f"{outcome.stray_output} bytes written meanwhile by processes that an earlier student's "
                       "cell left running are not this cell's output")
        if outcome.framing:
            # a forged end: this cell's output may hold another's; the shell is not trusted on
            record.extra["framing"] = outcome.framing
            ctx.notice(f"{outcome.framing}; this cell's output and checks do not count")
            if not outcome.shell_ended:
                self._close_shell(keep_connection=True)
                outcome.shell_ended = "the shell's framing was tampered with, so the shell was stopped"
        if outcome.shell_ended:
            self.shell = None
            self._ended_notice = None  # said here: the next cell does not say it again
            ctx.notice(f"{outcome.shell_ended}; the next cell starts a new shell "
                       "(cwd, variables and functions are lost)")
        if outcome.status != record.expected_exit:
            text = _error_text(outcome, record.failed_commands)
            if record.expected_exit:
                text += f" (expected {record.expected_exit})"
            raise _Failed(CellFailure("CellError", text, outcome.status))

    # ---- checks ------------------------------------------------------------------
    def _evaluate_checks(self, ctx: CellContext, error: CellFailure | None) -> None:
        """Run the cell's %%check scripts, then its %expect lines; results go in the record."""
        record = ctx.record
        scripts = []
        for check in ctx.check_scripts:
            points = 1 if check.points is None else check.points
            note = _why_not_run(error, ctx.outcome) or ("not run: the cell was interrupted"
                                                        if self._stop_checks.is_set() else "")
            if note:
                scripts.append(script_result(check, 1, "", points, note))
                continue
            try:
                result = self.run_check(check.script)
            except (TargetError, ShellError) as exc:
                scripts.append(script_result(check, 255, "", points, f"not run: {exc}"))
                continue
            if result.system_changes:
                record.extra["tampered"] = result.system_changes
                scripts.append(script_result(check, result.status, result.output, points,
                                             f"not counted: {describe_changes(result.system_changes)}"))
                continue
            if result.interrupted or result.timed_out:
                record.interrupted = record.interrupted or result.interrupted
                record.timed_out = record.timed_out or result.timed_out
                what = "interrupted" if result.interrupted else f"stopped after the {self._check_timeout():g} s timeout"
                scripts.append(script_result(check, result.status, result.output, points, f"the check was {what}"))
                continue
            scripts.append(script_result(check, result.status, result.output, points))
        for expectation in ctx.expectations:
            record.checks.append(
                expectation_result(expectation, record.exit_status, record.stdout.text, record.stderr.text))
        record.checks.extend(scripts)
        if record.extra.get("framing"):
            for check in record.checks:
                check.update(passed=False, message=f"not counted: {record.extra['framing']}")

    def _timed_out_notice(self) -> str:
        limit = f"the default {self.timeout:g} s limit for a cell in a notebook" if self.timeout_is_default \
            else f"the {self.timeout:g} s timeout"
        return (f"the cell ran past {limit} and was stopped; to give cells longer, put `%timeout SECONDS` "
                "(or `%timeout off`) at the top of the cell, or set WORKSHOP_TIMEOUT")

    def _check_timeout(self) -> float:
        return self._timeout or 60  # a notebook's default is for cells; a check gets a minute

    def run_check(self, script: str) -> CommandResult:
        """Run a check script in a clean shell on the target (see shell.clean):
        the student shell's working directory and variables, none of its
        functions, aliases, options or PATH."""
        shell = self._ensure_shell(None)
        variables = {}
        if shell.flavour == "bash":
            variables = parse_variables(self.run_hidden(DUMP_VARIABLES, timeout=10).stdout)
        agent = self.target.sealed_agent()
        if agent is not None:  # the VM judges from outside the student's reach (vm/agent.py)
            return agent.run_check(check_program(script, variables), shell.pid, self._check_timeout(),
                                   self._stop_checks)
        tag = f"workshop-check-{secrets.token_hex(6)}"
        assert self._transport is not None
        command, program = check_command(script, variables, shell.pid, tag, session=shell.nonce)
        channel = self._transport.channel(command)
        self._running_check = tag
        try:
            channel.write(program)
            result = collect(channel, self._check_timeout(), self._stop_checks)
            if result.interrupted or result.timed_out:
                shell.channel.run_aside(stop_command(tag))
        finally:
            self._running_check = None
            channel.close()
        return result

    def _failed_check_error(self, record: Record) -> CellFailure | None:
        if self.settings.failed_check != "error":
            return None
        failed = [c for c in record.checks if not c["passed"]]
        if not failed:
            return None
        text = "; ".join(f"{c['name']}: {c['message']}" for c in failed)
        return CellFailure(CHECKS_FAILED, f"failed checks: {text}", record.exit_status)

    # ---- what magics may do (magics.context.SessionOps) -----------------------------
    def run_hidden(self, code: str, timeout: float | None = 60) -> CommandResult:
        """Run shell code in the session's shell without showing its output."""
        shell = self._ensure_shell(None)
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        outcome = shell.run(code, on_output=lambda stream, data: chunks[stream].append(data), timeout=timeout)
        if outcome.shell_ended:
            self.shell = None
        outcome.stdout = b"".join(chunks["stdout"]).decode("utf-8", "replace")
        outcome.stderr = b"".join(chunks["stderr"]).decode("utf-8", "replace")
        return outcome

    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult:
        """Write a file on the target: through its transport, else base64 through the shell."""
        self._ensure_shell(None)
        assert self._transport is not None
        result = self._transport.upload(path, data, mode)
        if result.ok:
            return result
        log.warning("upload of %s through the transport failed (%s); sending it through the shell",
                    path, result.problem())
        return upload_through_shell(self.run_hidden, path, data, mode)

    def register_cleanup(self, key: str, shell_code: str) -> None:
        """Shell code that undoes something a magic made; kept on the target
        too, so that if this kernel dies the next one can run it (shell.leftovers)."""
        self._cleanups[key] = shell_code
        shell = self._ensure_shell(None)
        assert shell.channel is not None
        self._cleanup_files[key] = path = f"{shell.state_dir}/cleanups/{len(self._cleanup_files):06d}"
        shell.channel.run_aside(f"cat > {shlex.quote(path)}", f"# {key}\n{shell_code}\n".encode())

    def forget_cleanup(self, key: str) -> None:
        self._cleanups.pop(key, None)
        path = self._cleanup_files.pop(key, None)
        if path and self.shell is not None and self.shell.channel is not None:
            self.shell.channel.run_aside(f"rm -f {shlex.quote(path)}")

    def sweep_leftovers(self) -> dict[str, list[str]]:
        """Remove what kernels that died left on this target (their processes,
        mounts, cgroups, state directories); what was removed, per dead session."""
        shell = self._ensure_shell(None)
        result = self.run_hidden(sweep_script(skip=shell.nonce), timeout=120)
        return parse_sweep(result.stdout)

    def cleanup_keys(self) -> list[str]:
        return list(self._cleanups)

    def run_cleanups(self) -> list[str]:
        """Run every registered cleanup, newest first; the keys that failed."""
        failed = []
        for key in reversed(list(self._cleanups)):
            try:
                result = self.run_hidden(self._cleanups[key])
            except (TargetError, ShellError):
                failed.append(key)
                continue
            if result.status == 0:
                self.forget_cleanup(key)
            else:
                failed.append(key)
        return failed

    def state(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self._state:
            self._state[key] = factory()
        return self._state[key]

    def switch_target(self, target: Target, source: str) -> None:
        if self.settings.target_locked:
            raise MagicError(f"the target is fixed for this run ({self.target.spec}); "
                             f"cells cannot move to {target.spec}")
        self._cleanup_if_alive()
        self._close_shell()
        self.target, self.target_source = target, source
        self._ended_notice = None
        self._target_error = None

    # ---- the shell ---------------------------------------------------------------
    def _shell_usable(self) -> bool:
        return self.shell is not None and self.shell.alive and not self.target.gone()

    def _ensure_shell(self, ctx: CellContext | None) -> PersistentShell:
        frozen = self.target.unreachable()
        if frozen:  # said before anything waits on it; a shell there is kept for when it runs again
            raise TargetError(frozen)
        if self._shell_usable():
            assert self.shell is not None
            return self.shell
        if self._target_error:
            raise TargetError(self._target_error)
        if self.shell is not None:  # it went between cells, with its machine or its connection
            self._ended_notice = self._ended_notice or self._why_gone()
        self._close_shell(keep_connection=True)
        self._prepare_target()
        if self._transport is not None and self._transport_to != self._where():
            # the machine is elsewhere now (a VM booted again on a new port)
            self._close_shell()
        if self._transport is None:
            self._transport = self.target.open()
            self._transport_to = self._where()
        shell = PersistentShell(self._transport.channel, unreachable=self.target.unreachable)
        try:
            # a grading rerun (target locked) runs what the notebook says, whoever's ~/.bashrc is there
            shell.start(bashrc=self.settings.bashrc and not self.settings.target_locked,
                        ordered=self.settings.ordered_output)
        except (ShellError, OSError) as exc:
            shell.close()
            raise TargetError(f"could not start a shell on {self.target.describe()}: "
                              f"{exc or type(exc).__name__}") from None
        self.target.host_key_fingerprint = self._transport.host_key_fingerprint
        self.shell = shell
        self._cleanup_files.clear()  # a new shell, a new state directory
        self._report_leftovers(ctx)
        if not shell.ordered and self.settings.ordered_output and ctx is not None and not self._told_unordered:
            self._told_unordered = True  # once: it is the target's nature, not the cell's
            ctx.notice(f"{self.target.describe()} cannot run the relay that keeps stdout and stderr in "
                       "order (it needs perl): each stream arrives in order, the two may not")
        if self._ended_notice and ctx is not None:
            ctx.notice(f"started a new shell on {self.target.describe()} ({self._ended_notice}); "
                       "cwd, variables and functions from the old shell are gone")
            self._ended_notice = None
        return shell

    def _where(self) -> tuple:
        return self.target.address()

    def _why_gone(self) -> str:
        assert self.shell is not None
        channel = self.shell.channel
        if self.target.gone():
            return f"{self.target.spec} stopped"
        lost = channel.lost_reason() if channel is not None else None
        return lost or "the shell ended"

    def _report_leftovers(self, ctx: CellContext | None) -> None:
        """A new shell first removes what dead kernels left on the target."""
        try:
            found = self.sweep_leftovers()
        except (TargetError, ShellError):
            log.warning("looking for leftovers of dead kernels failed", exc_info=True)
            return
        if found:
            what = "; ".join(item for items in found.values() for item in items)
            self._notices.append(f"removed what {len(found)} kernel(s) that died left on "
                                 f"{self.target.describe()}: {what}")

    def _prepare_target(self) -> None:
        """Let the target get ready (a qemu VM boots on first use)."""
        ticking = Ticking(self._progress) if self._progress is not None else None
        try:
            with self.blocking_wait():
                self.target.prepare(ticking)
        except KeyboardInterrupt:
            raise TargetError(
                f"{self.target.spec}: interrupted while getting ready (a VM that was booting was stopped); "
                "run a cell again to start it"
            ) from None
        finally:
            if ticking is not None:
                ticking.close()

    def _close_shell(self, keep_connection: bool = False, cleanups: str = "") -> None:
        if self.shell is not None:
            try:
                self.shell.close(cleanups)
            except Exception:
                log.debug("closing the shell failed", exc_info=True)
            self.shell = None
        if not keep_connection and self._transport is not None:
            self._transport.close()
            self._transport = None

    def _cleanup_if_alive(self) -> None:
        """Cleanups when leaving a target, only through a live shell: what a dead
        shell's magics made went with it (or with its machine), and a stopped VM
        must not be booted again just to clean it."""
        if not self._cleanups:
            return
        if self.shell is None or not self.shell.alive:
            self._cleanups.clear()
            return
        try:
            self.run_cleanups()
        except Exception:
            log.warning("cleanup failed", exc_info=True)

    # ---- outside cells -------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the running cell or its checks (from any thread)."""
        self._stop_checks.set()
        shell = self.shell
        if shell is not None:
            shell.interrupt()

    def ask(self, command: str, timeout: float) -> str:
        """What ``command`` prints, run aside in the shell, for Tab and Shift-Tab:
        "" when it cannot run, and never boots a machine to answer.  Between cells
        only: from another thread it waits for the running cell to end."""
        if not self._busy.acquire(timeout=timeout):
            return ""
        try:
            if not self._shell_usable() and not self.target.quick_to_start:
                return ""
            return self.run_hidden(command, timeout=timeout).stdout
        except (TargetError, ShellError):
            return ""
        finally:
            self._busy.release()

    def complete(self, token: str, command: bool = False) -> list[str]:
        """Completions of ``token`` from the target (``command``: where a command is
        written, so commands too; else files, as bash does): from what the target
        offered (:mod:`workshop.offers`), else its shell; never boots a machine."""
        found = self.offers.complete(token, command)
        if found is None:
            asked = self.ask(f"__ws_complete {shlex.quote(token)} {'command' if command else 'argument'}", timeout=5)
            found = asked.splitlines()
        return list(dict.fromkeys(word for word in found if word.startswith(token)))

    def _files(self) -> tuple[Transport, int] | None:
        """Where Tab reads the target's files: its transport and the shell's pid."""
        shell, transport = self.shell, self._transport
        if shell is None or transport is None or not shell.pid or not self._shell_usable():
            return None
        return transport, shell.pid

    def release_idle_target(self, why: str) -> None:
        """Let the target stop what it started for this kernel (a restored VM), between
        cells; the next cell starts it again and says ``why`` it is new."""
        if self.shell is None:
            return
        self._cleanups.clear()  # what magics made goes with the machine
        self._close_shell()
        try:
            self.target.release()
        except Exception:
            log.warning("stopping %s failed", self.target.spec, exc_info=True)
            return
        self._ended_notice = why

    def close(self) -> None:
        """Undo what magics made and end the shell (shutdown, restart); a check
        that is running then (in its own session, not below the shell) ends too.
        The target does it all in one side command (PersistentShell.close): a
        shutdown must be over within the couple of seconds Jupyter gives it."""
        tag, shell = self._running_check, self.shell
        if tag and shell is not None and shell.channel is not None:
            self._stop_checks.set()
            shell.channel.run_aside(stop_command(tag))
        cleanups = ""
        if shell is not None and shell.alive:  # a dead shell's magics went with it (or its machine)
            cleanups = "".join(f"( {self._cleanups[key]}\n)\n" for key in reversed(list(self._cleanups)))
        self._cleanups.clear()
        self._close_shell(cleanups=cleanups)
        try:
            self.target.release()
        except Exception:
            log.warning("stopping %s failed", self.target.spec, exc_info=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SECONDS = re.compile(r"\((\d+) s\b")


class Ticking:
    """A progress sink that says the last step again each second it stays the last,
    its seconds counted on: a booting VM can be silent for a while, and a counter
    that stops looks like a hung machine.  A step's own count, ``(12 s``, goes on
    from where it was; a step without one gets `` · N s`` (seconds on that step)."""

    def __init__(self, say: ProgressSink, every: float = 1.0) -> None:
        self._say, self._every = say, every
        self._lock = threading.Lock()
        self._last: tuple[str, float] | None = None  # the step shown and when it was said
        self._stop = threading.Event()
        threading.Thread(target=self._tick, name="progress-tick", daemon=True).start()

    def __call__(self, text: str) -> None:
        with self._lock:
            self._say(text)
            self._last = None if isinstance(text, Notice) else (text, time.monotonic())

    def _tick(self) -> None:
        while not self._stop.wait(self._every):
            with self._lock:
                if self._last is not None and not self._stop.is_set():
                    text, said = self._last
                    if time.monotonic() - said >= self._every:
                        self._say(counted_on(text, int(time.monotonic() - said)))

    def close(self) -> None:
        """No more steps: the ticking ends before this returns."""
        self._stop.set()
        with self._lock:
            self._last = None


def counted_on(step: str, seconds: int) -> str:
    """``step`` as it reads ``seconds`` after it was said."""
    found = _SECONDS.search(step)
    if found:
        return f"{step[:found.start(1)]}{int(found.group(1)) + seconds}{step[found.end(1):]}"
    return f"{step} · {seconds} s"


def upload_through_shell(run: Callable[..., CommandResult], path: str, data: bytes,
                         mode: str | None = None, chunk: int = 384 * 1024) -> CommandResult:
    """Write ``data`` to ``path`` with base64 text sent through the shell in chunks."""
    import base64

    text = base64.b64encode(data).decode()
    staging = shlex.quote(f"{path}.b64")
    steps = [f": > {staging}"]
    steps += [f"printf '%s' '{text[i : i + chunk]}' >> {staging}" for i in range(0, len(text), chunk)]
    finish = f"base64 -d < {staging} > {shlex.quote(path)} && rm -f {staging}"
    if mode:
        finish += f" && chmod {mode} {shlex.quote(path)}"
    steps.append(f"{finish} || {{ rm -f {staging}; exit 1; }}")
    for step in steps:
        result = run(f"(\n{step}\n)", timeout=120)
        if result.status != 0:
            return result
    return CommandResult(0)


def _why_not_run(error: CellFailure | None, outcome: CommandResult | None) -> str:
    """Why a check script is not run after this cell ("" when it should run)."""
    if error is not None and error.ename in ("MagicError", "TargetError"):
        return f"not run: the cell failed before its code ran ({error.ename})"
    if outcome is not None and (outcome.interrupted or outcome.timed_out):
        return "not run: the cell was interrupted"
    if outcome is not None and outcome.shell_ended:
        return "not run: the shell ended"
    return ""


def _failed_commands(outcome: CommandResult, body: str) -> list[dict]:
    failed = list(outcome.failed_commands)
    # The cell's own `eval` is reported last when the cell fails; it is not a
    # command the student wrote.
    if failed and failed[-1].command.startswith("builtin eval ") and len(failed[-1].command) >= len(body):
        failed.pop()
    return [{"line": f.line, "status": f.status, "command": f.command} for f in failed]


def _error_text(outcome: CommandResult, failed: list[dict]) -> str:
    if outcome.needs_terminal:
        return (f"{outcome.needs_terminal} needs a terminal (it switched to a full-screen display) and a cell has "
                "none, so it was stopped. Instead: write a file with %%file NAME or a heredoc, read one with cat or "
                "less, see processes with `top -b -n 1` or ps, or run it in a terminal (JupyterLab: File > New > "
                "Terminal; a VM's: `workshop vm ssh-info NAME`).")
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


def initial_target(settings: Settings, notebook_target: str | None = None) -> tuple[Target, str, str | None]:
    """The notebook's metadata (``notebook_target``, as the front end read it), then
    WORKSHOP_TARGET, then local (``%target`` overrides all).

    A bad spec is not dropped silently: the first cell reports it (third item).
    """
    local = parse_target("local", settings)
    candidates = []
    spec = None if settings.target_locked else notebook_target
    if spec:
        candidates.append((spec, "notebook metadata"))
    if settings.target:
        candidates.append((settings.target, "WORKSHOP_TARGET"))
    for spec, source in candidates:
        try:
            return parse_target(spec, settings), source, None
        except TargetError as exc:
            return local, source, f"the target from {source} is not usable: {exc}; fix it or choose one with %target SPEC"
    return local, "default", None
