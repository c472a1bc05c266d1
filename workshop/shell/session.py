"""A persistent shell that runs cells: state carries over, framing never breaks."""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Callable

from ..errors import ShellError
from .channels import STDERR, STDOUT, Channel, ChannelClosed
from .framing import (
    Marker,
    MarkerScanner,
    bootstrap_command,
    cell_lines,
    driver_script,
    hello_line,
    new_nonce,
)
from .result import CommandResult, FailedCommand

# Seconds between SIGINT and the harder steps of an interrupt.
INTERRUPT_GRACE = 0.3
KILL_GRACE = 0.6
# A shell that has not ended the cell this long after an interrupt no longer
# frames cells (a cell pointed the kernel's descriptors elsewhere, say): it is stopped and
# the next cell starts a new one.
UNRESPONSIVE_AFTER = 5.0

# bash says this when a job it waits for dies of a signal (an interrupt, or
# SIGPIPE in `ls | head`) and it has no terminal; it is not the cell's output.
_TTY_NOISE = re.compile(rb"^bash: \[\d+: \d+ \(\d+\)\] tcsetattr: [^\n]*\n", re.M)

OutputCallback = Callable[[str, bytes], None]  # ("stdout"|"stderr", data)
InputCallback = Callable[[str, bool], "str | None"]  # (prompt, password) -> line or None for EOF


class ShellSession:
    """One long-lived shell on a channel.

    ``run`` is called from one thread at a time; ``interrupt`` may be called from
    any thread (a signal handler or the control channel) while ``run`` waits.
    """

    def __init__(self, channel_factory: Callable[[str], Channel], state_root: str = "/tmp"):
        self._factory = channel_factory
        self._state_root = state_root
        self.channel: Channel | None = None
        self.pid = 0
        self.flavour = ""
        self.nonce = ""
        self._seq = 0
        self._interrupt_at: float | None = None
        self._lock = threading.Lock()
        self._running = False

    # ---- lifecycle -------------------------------------------------------
    @property
    def state_dir(self) -> str:
        return f"{self._state_root}/.workshop-{self.nonce}"

    def start(self, timeout: float = 30.0) -> None:
        self.nonce = new_nonce()
        self.channel = self._factory(bootstrap_command())
        self._out = MarkerScanner(self.nonce)
        self._err = MarkerScanner(self.nonce)
        self.channel.write(hello_line(self.nonce).encode())
        hello = self._await_marker("hello", timeout)
        self.pid = int(hello.fields[0])
        self.flavour = "bash" if hello.fields[1] != "sh" else "sh"
        self.channel.write(driver_script(self.nonce, self.flavour, self.state_dir).encode())
        self._await_marker("ready", timeout)

    def _await_marker(self, kind: str, timeout: float) -> Marker:
        assert self.channel is not None
        deadline = time.monotonic() + timeout
        said = b""  # what the target printed meanwhile: it may say why the shell ended
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShellError(f"the shell did not answer within {timeout:.0f} s")
            for stream, data in self.channel.read(left):
                if not data:
                    why = said.decode("utf-8", "replace").strip().splitlines()
                    text = self._ended_text("the shell ended while starting")
                    raise ShellError(f"{text}: {why[-1]}" if why else text)
                scanner = self._out if stream == STDOUT else self._err
                for item in scanner.feed(data):
                    if isinstance(item, Marker) and item.kind == kind:
                        return item
                    if isinstance(item, bytes):
                        said = (said + item)[-1000:]

    @property
    def alive(self) -> bool:
        return self.channel is not None and self.channel.exit_status() is None

    def close(self) -> None:
        if self.channel is not None:
            try:
                self.channel.run_aside(f"rm -rf {shlex.quote(self.state_dir)}")
            except Exception:
                pass
            self.channel.close()
            self.channel = None

    # ---- cells -----------------------------------------------------------
    def run(
        self,
        code: str,
        on_output: OutputCallback,
        on_input: InputCallback | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run one cell; stream its output; return its outcome."""
        if self.channel is None:
            raise ShellError("the shell is not running")
        self._seq += 1
        seq = str(self._seq)
        started = time.monotonic()
        deadline = started + timeout if timeout else None
        outcome = CommandResult(status=0)
        with self._lock:
            self._interrupt_at = None
            self._running = True
        try:
            try:
                self.channel.write(cell_lines(code, self._seq, self.flavour, on_input is not None, self.nonce).encode())
            except ChannelClosed:
                return self._ended(outcome)
            done_out = done_err = False
            escalated = 0
            while not (done_out and done_err):
                now = time.monotonic()
                if deadline is not None and now >= deadline and not outcome.interrupted:
                    outcome.timed_out = True
                    self.interrupt()
                wait = 0.2
                if deadline is not None and not outcome.timed_out:
                    wait = min(wait, max(deadline - now, 0))
                with self._lock:
                    interrupt_at = self._interrupt_at
                if interrupt_at is not None:
                    outcome.interrupted = True
                    if now - interrupt_at >= UNRESPONSIVE_AFTER:
                        return self._stop_unresponsive(outcome)
                    escalated = self._escalate(interrupt_at, escalated)
                    wait = min(wait, 0.05)
                try:
                    events = self.channel.read(wait)
                except ChannelClosed:
                    events = [(STDOUT, b""), (STDERR, b"")]
                closed = {stream for stream, data in events if not data}
                for stream, data in events:
                    if data:
                        ended = self._take(stream, data, seq, outcome, on_output, on_input)
                        done_out, done_err = done_out or ended == STDOUT, done_err or ended == STDERR
                if closed:
                    # the shell is gone: what it wrote on the other stream before it went still counts
                    self._drain(closed, seq, outcome, on_output)
                    return self._ended(outcome)
        finally:
            with self._lock:
                if self._interrupt_at is not None:
                    outcome.interrupted = True
                self._running = False
                self._interrupt_at = None
        if outcome.interrupted:
            if outcome.status == 0:
                outcome.status = 130
            self._reap()
        return outcome

    def _take(self, stream: int, data: bytes, seq: str, outcome: CommandResult,
              on_output: OutputCallback, on_input: InputCallback | None) -> int | None:
        """Pass a chunk's output on and act on its markers; the stream whose
        end marker for cell ``seq`` it held, else None."""
        name = "stdout" if stream == STDOUT else "stderr"
        scanner = self._out if stream == STDOUT else self._err
        ended = None
        for item in scanner.feed(data):
            if isinstance(item, bytes):
                if stream == STDERR and b"tcsetattr" in item:
                    item = _TTY_NOISE.sub(b"", item)
                    if not item:
                        continue
                on_output(name, item)
            elif item.kind == "end" and item.fields[0] == seq:
                ended = stream
                if stream == STDOUT:
                    outcome.status = int(item.fields[1])
                    outcome.failed_commands = _parse_failed(item.fields[2])
            elif item.kind == "in" and stream == STDOUT:
                self._answer_input(item.fields[0], on_input)
            # stale markers from an earlier, interrupted cell are dropped
        return ended

    def _drain(self, closed: set[int], seq: str, outcome: CommandResult, on_output: OutputCallback,
               patience: float = 1.0) -> None:
        """Read what is left on the streams of a shell that ended, up to their EOF."""
        assert self.channel is not None
        deadline = time.monotonic() + patience
        while len(closed) < 2 and time.monotonic() < deadline:
            try:
                events = self.channel.read(0.05)
            except ChannelClosed:
                return
            for stream, data in events:
                if data:
                    self._take(stream, data, seq, outcome, on_output, None)
                else:
                    closed.add(stream)

    def _ended(self, outcome: CommandResult) -> CommandResult:
        assert self.channel is not None
        # Drain what is left so the exit status is known.
        for _ in range(100):
            if self.channel.exit_status() is not None:
                break
            time.sleep(0.01)
        status = self.channel.exit_status()
        outcome.shell_ended = self._ended_text("the shell ended")
        outcome.status = status if status is not None else 255
        self.close()  # also removes the state directory the driver made
        return outcome

    def _stop_unresponsive(self, outcome: CommandResult) -> CommandResult:
        assert self.channel is not None
        self.channel.run_aside(f"kill -KILL -{self.pid} 2>/dev/null")
        outcome.shell_ended = (
            f"the shell did not finish the cell {UNRESPONSIVE_AFTER:.0f} s after the interrupt, "
            "so it was stopped"
        )
        outcome.status = outcome.status or 130
        self.close()
        return outcome

    def _ended_text(self, what: str) -> str:
        assert self.channel is not None
        lost = self.channel.lost_reason()
        if lost:
            return lost
        status = self.channel.exit_status()
        return f"{what} (exit status {status})" if status is not None else what

    def _answer_input(self, args: str, on_input: InputCallback | None) -> None:
        assert self.channel is not None
        number, _, args = args.partition(":")
        prompt, password = _read_prompt(args)
        answer = on_input(prompt, password) if on_input else None
        with self._lock:
            if self._interrupt_at is not None:
                return  # the read was interrupted: nobody will open its FIFO
        fifo = shlex.quote(f"{self.state_dir}/in.{number}")
        if answer is None:
            self.channel.run_aside(f": > {fifo}")
        else:
            self.channel.run_aside(f"cat > {fifo}", (answer + "\n").encode())

    # ---- interrupts ------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the running command and abandon the rest of the cell."""
        with self._lock:
            if not self._running or self._interrupt_at is not None:
                return
            self._interrupt_at = time.monotonic()
        if self.channel is not None and self.pid:
            # The abort flag makes the shell drop the rest of the cell even when
            # the command catches SIGINT and exits normally.
            abort = shlex.quote(f"{self.state_dir}/abort")
            self.channel.run_aside(f": > {abort}; kill -INT -{self.pid} 2>/dev/null")

    def _reap(self) -> None:
        """Stop background jobs the interrupted cell started."""
        assert self.channel is not None
        self.channel.write(b"\\__ws_reap\n")
        try:
            self._await_marker("reaped", 5.0)
        except ShellError:
            pass

    def _escalate(self, since: float, done: int) -> int:
        """A command that survives SIGINT (or catches it) is killed after a grace
        period, and the shell is told to drop the rest of the cell."""
        assert self.channel is not None
        elapsed = time.monotonic() - since
        pid = self.pid
        abort = shlex.quote(f"{self.state_dir}/abort")
        jobs = shlex.quote(f"{self.state_dir}/jobs")
        # Everything in the shell's process group but the shell and the jobs
        # that earlier cells left running in the background.
        others = (
            f"for p in $(pgrep -g {pid} 2>/dev/null || ps -o pid= -g {pid} 2>/dev/null); do "
            f'[ "$p" = {pid} ] || grep -qx "$p" {jobs} 2>/dev/null || kill -{{sig}} "$p" 2>/dev/null; done'
        )
        if done == 0 and elapsed >= INTERRUPT_GRACE:
            self.channel.run_aside(others.format(sig="TERM"))
            return 1
        if done == 1 and elapsed >= INTERRUPT_GRACE + KILL_GRACE:
            self.channel.run_aside(
                others.format(sig="KILL") + f"; [ -e {abort} ] && kill -INT {pid}"
            )
            return 2
        return done


def _parse_failed(text: str) -> list[FailedCommand]:
    failed = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[0].lstrip("-").isdigit() and parts[1].isdigit():
            failed.append(FailedCommand(int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else ""))
    return failed


def _read_prompt(args: str) -> tuple[str, bool]:
    """The prompt and secrecy of a `read` call, from its arguments, read the
    way getopts does (``-sp 'Pass: '``, ``-rp'Name: '``)."""
    words = [w for w in args.split("\x1f")]
    if words and words[-1] == "":
        words.pop()
    prompt, password = "", False
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--" or not word.startswith("-") or len(word) == 1:
            break
        j = 1
        while j < len(word):
            option = word[j]
            if option == "s":
                password = True
            elif option in "adinNptu":  # options that take an argument
                value = word[j + 1 :]
                if not value and i + 1 < len(words):
                    i += 1
                    value = words[i]
                if option == "p":
                    prompt = value
                break
            j += 1
        i += 1
    return prompt, password
