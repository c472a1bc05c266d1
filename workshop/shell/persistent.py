"""A persistent shell that runs cells: state carries over, framing never breaks."""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ShellError
from .channels import ISOLATED_ERR, ISOLATED_OUT, STDERR, STDOUT, Channel, ChannelClosed
from .framing import (
    Marker,
    MarkerScanner,
    bootstrap_command,
    cell_lines,
    driver_script,
    fallback_line,
    hello_line,
    new_nonce,
    new_token,
    startup_file_line,
)
from .leftovers import warden_command
from .ordered import FORGED_INPUT, OrderedChannel, relayed
from .result import CommandResult, FailedCommand

log = logging.getLogger("workshop")

# Seconds between SIGINT and the harder steps of an interrupt.
INTERRUPT_GRACE = 0.3
KILL_GRACE = 0.6
# A shell that has not ended the cell this long after an interrupt no longer
# frames cells (a cell pointed the kernel's descriptors elsewhere, say): it is stopped and
# the next cell starts a new one.
UNRESPONSIVE_AFTER = 5.0
# Seconds of silence in a cell before the session looks from outside whether the
# shell is still busy with it (see PersistentShell._watch).
PROBE_AFTER = 1.0
# How long such a look may wait for its answer, and how long a target may not
# answer at all before the cell ends (a frozen machine that cannot say so itself).
PROBE_TIMEOUT = 2.0
SILENT_TARGET_AFTER = 60.0
# How long closing a shell waits for the target to end its processes (if it
# does not answer, the warden does that once the connection closes).
CLOSE_TIMEOUT = 10.0
PROBE_GONE = 3
PROBE_NO_PROCESSES = 4  # idle, and its cgroup has refused a new process (a fork bomb reached its pids.max)
# A cell's output goes out in the order written for this many switches between
# stdout and stderr; past them, in batches (see _Output).
IN_ORDER_SWITCHES = 200
BATCH_SECONDS, BATCH_BYTES = 0.1, 1 << 20

# A program switching to the terminal's alternate screen (what vim, nano, less on a
# terminal and htop do first) needs a terminal, which a cell has not: it is stopped.
_FULL_SCREEN = re.compile(rb"\x1b\[\?(?:1049|1047|47)h")
_ESCAPES = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|[=>])")
_TRAILING_ESCAPES = re.compile(rb"(?:\x1b(?:\[[0-?]*[ -/]*[@-~]|[=>]))+\Z")
# The usual ones, to name the one a cell ran (side commands report only a status).
FULL_SCREEN_PROGRAMS = frozenset(
    "vim vi nvim view vimdiff nano pico emacs joe mcedit mc less more most man info top htop btop atop iotop "
    "iftop nethogs watch tmux screen ncdu ranger nnn mutt alsamixer whiptail dialog nmtui".split())

# bash says this when a job it waits for dies of a signal (an interrupt, or
# SIGPIPE in `ls | head`) and it has no terminal; it is not the cell's output.
_TTY_NOISE = re.compile(rb"^bash: \[\d+: \d+ \(\d+\)\] tcsetattr: [^\n]*\n", re.M)

OutputCallback = Callable[[str, bytes], None]  # ("stdout"|"stderr", data)
DisplayCallback = Callable[[str, str], None]  # (file name, base64 data) from the shell's `display`
InputCallback = Callable[[str, bool], "str | None"]  # (prompt, password) -> line or None for EOF


@dataclass
class _Cell:
    """The runner's view of one cell while it runs."""

    seq: int
    token: str
    deadline: float | None
    outcome: CommandResult = field(default_factory=lambda: CommandResult(0))
    on_display: DisplayCallback | None = None
    ended: set[int] = field(default_factory=set)  # streams whose end marker came
    ended_by: str = ""
    fallback: str = ""  # the token of the line sent after an interrupt
    escalated: int = 0
    heard: float = field(default_factory=time.monotonic)  # last output
    probed: float = 0.0
    asked: float = 0.0  # when the target was last asked whether it can answer
    unanswered: float = 0.0  # since when the looks from outside get no answer
    idle: int = 0  # probes in a row that found the shell at its prompt
    isolated: bool = False  # runs in a subshell writing on the relay's second pair of streams
    code: str = ""
    # escape sequences that ended the last output, held back: they may be a full-screen
    # program's first (its stream's name, the bytes)
    held: tuple[str, bytes] = ("stdout", b"")


class _Output:
    """A cell's output on its way out, in the order it was written.

    Each switch between stdout and stderr is a message of its own to the
    notebook.  A cell that switches more than IN_ORDER_SWITCHES times would
    flood it (and a Jupyter server's rate limit) with outputs, so from then on
    what comes within BATCH_SECONDS is held and passed on as one piece per
    stream, in the order the streams first wrote in that batch.
    """

    def __init__(self, send: OutputCallback) -> None:
        self._send = send
        self._last = ""
        self._switches = 0
        self._held: dict[str, list[bytes]] = {}
        self._held_bytes = 0
        self._since = 0.0

    def write(self, name: str, data: bytes) -> None:
        if name != self._last:
            self._switches += 1 if self._last else 0
            self._last = name
        if self._switches <= IN_ORDER_SWITCHES:
            self._send(name, data)
            return
        if not self._held:
            self._since = time.monotonic()
        self._held.setdefault(name, []).append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= BATCH_BYTES:
            self.flush()

    def flush_due(self, now: float, wait: float) -> float:
        """Pass on a batch whose time is up; how long the reader may wait now."""
        if self._held and now >= self._since + BATCH_SECONDS:
            self.flush()
        return min(wait, max(self._since + BATCH_SECONDS - now, 0)) if self._held else wait

    def flush(self) -> None:
        held, self._held, self._held_bytes = self._held, {}, 0
        for name, parts in held.items():
            self._send(name, b"".join(parts))


def idle_probe(pid: int, stdin: str) -> str:
    """Shell code, run beside the shell: exit 3 when it is gone (or a zombie),
    0 when it waits for its next command line (reading its own input, no
    children), 4 when it does so in a cgroup that refused it a process, else 1."""
    return (  # a subshell: `exit` must not end the SSH side channel's loop
        f"( p={pid}; set -- $(cat /proc/$p/stat 2>/dev/null); "
        f"[ $# -gt 2 ] && [ \"$3\" != Z ] || exit {PROBE_GONE}; [ \"$3\" = S ] || exit 1; "
        f"[ \"$(readlink /proc/$p/fd/0 2>/dev/null)\" = {shlex.quote(stdin)} ] || exit 1; "
        "set -- $(cat /proc/$p/task/*/children 2>/dev/null); [ $# = 0 ] || exit 1; "
        "if s=$(cat /proc/$p/syscall 2>/dev/null); then set -- $s; [ \"$2\" = 0x0 ] || exit 1; fi; "
        # a shell that could not fork cannot end its cell: that is the cgroup's limit, not a broken driver
        "c=$(sed -n 's/^0:://p' /proc/$p/cgroup 2>/dev/null); "
        "while read -r k v; do [ \"$k\" = max ] && [ \"$v\" -gt 0 ] && exit "
        f"{PROBE_NO_PROCESSES}; done < \"/sys/fs/cgroup$c/pids.events\" 2>/dev/null; exit 0 )"
    )


def descendants_kill(pid: int, signal: str, keep_file: str | None = None) -> str:
    """Shell code that sends ``signal`` to every process below ``pid``: its
    process tree (so that `setsid` and `timeout` children are found too) and its
    process group (where `ps` cannot say parents, as busybox's), but not to
    the processes listed in ``keep_file`` nor below them."""
    keep = "while ((getline l < keep_file) > 0) keep[l] = 1; " if keep_file else ""
    kept = f'grep -qx "$p" {shlex.quote(keep_file)} 2>/dev/null || ' if keep_file else ""
    tree = (
        f"ps -e -o pid= -o ppid= 2>/dev/null | awk -v root={pid} -v keep_file={shlex.quote(keep_file or '')} '"
        "BEGIN { " + keep + "} { parent[$1] = $2 } "
        "END { for (p in parent) { q = p; "
        "while ((q in parent) && q != root && q != 1 && !(q in keep)) q = parent[q]; "
        "if (q == root && p != root) print p } }'"
    )
    group = f"pgrep -g {pid} 2>/dev/null"
    return (f"{{ {tree}; {group}; }} | while read -r p; do [ \"$p\" = {pid} ] || {kept}"
            f"kill -{signal} \"$p\" 2>/dev/null; done")


class PersistentShell:
    """One long-lived shell on a channel.

    ``run`` is called from one thread at a time; ``interrupt`` may be called from
    any thread (a signal handler or the control channel) while ``run`` waits.
    """

    def __init__(self, channel_factory: Callable[[str], Channel], state_root: str = "/tmp",
                 unreachable: Callable[[], str | None] = lambda: None):
        self._factory = channel_factory
        self._state_root = state_root
        # why the target cannot answer now (a frozen VM), asked while a cell is silent
        self._unreachable = unreachable
        self.channel: Channel | None = None
        self._warden: Channel | None = None  # ends the session if the kernel dies (shell.leftovers)
        self.pid = 0
        self.flavour = ""
        self.nonce = ""
        self._seq = 0
        self._stdin = ""  # what the shell's fd 0 is (pipe:[N]): its prompt reads from it
        # the end tokens of recent cells, which ends were seen, and which token ended each
        self._tokens: dict[int, set[str]] = {}
        self._seen: set[tuple[int, str, int]] = set()
        self._ended_by: dict[int, str] = {}
        self._fallback_of: dict[int, str] = {}
        self._interrupt_at: float | None = None
        self._lock = threading.Lock()
        self._running = False

    # ---- lifecycle -------------------------------------------------------
    @property
    def state_dir(self) -> str:
        return f"{self._state_root}/.workshop-{self.nonce}"

    @property
    def ordered(self) -> bool:
        """Whether stdout and stderr arrive in the order they were written
        (the target runs the relay, see shell.ordered), not only each in its own."""
        return isinstance(self.channel, OrderedChannel) and bool(self.channel.ordered)

    def start(self, timeout: float = 30.0, bashrc: bool = False, ordered: bool = True) -> None:
        """Start the shell; ``bashrc``: source the user's ~/.bashrc first (bash only);
        ``ordered=False``: plain pipes, the two streams not ordered between them."""
        self.nonce = new_nonce()
        self.channel = OrderedChannel(self._factory(relayed(bootstrap_command(), ordered)))
        self._out = MarkerScanner(self.nonce)
        self._err = MarkerScanner(self.nonce)
        self._isolated_scanners = {ISOLATED_OUT: MarkerScanner(self.nonce), ISOLATED_ERR: MarkerScanner(self.nonce)}
        self.channel.write(self.channel.key_line())
        self.channel.write(hello_line(self.nonce).encode())
        hello = self._await_marker("hello", timeout)
        self.pid = int(hello.fields[0])
        version, _, self._stdin = ":".join(hello.fields[1:]).partition("|")  # pipe:[N] holds a colon
        self.flavour = "bash" if version != "sh" else "sh"
        if bashrc and self.flavour == "bash":
            self.channel.write(startup_file_line().encode())
        self.channel.write(driver_script(self.nonce, self.flavour, self.state_dir, split=self.ordered).encode())
        self._await_marker("ready", timeout)
        try:
            self._warden = self._factory(warden_command(self.state_dir, self.nonce))
        except (ShellError, OSError):  # the shell works without; a sweep then finds what it leaves
            log.warning("could not start the shell's warden", exc_info=True)

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

    def close(self, cleanups: str = "") -> None:
        """End the shell, what it left running (background jobs, `setsid`
        children: the whole process tree) and its state directory.  ``cleanups``:
        sh code run between the two, when nothing of the shell's holds what it
        undoes any more; all of it is one side command, so that a kernel shutting
        down waits for one answer from the target, not one per magic."""
        if self.channel is not None:
            steps = []
            if self.pid:  # the tree first: once the shell is gone its children have other parents
                steps.append(f"{{ {descendants_kill(self.pid, 'KILL')}; kill -KILL -{self.pid} {self.pid}; }} "
                             "</dev/null 2>/dev/null")
            if cleanups:
                steps.append("sh >/dev/null 2>&1")  # reads them from its stdin
            steps.append(f"rm -rf {shlex.quote(self.state_dir)}")
            try:
                self.channel.run_aside("; ".join(steps), stdin=cleanups.encode(), timeout=CLOSE_TIMEOUT)
            except Exception:
                pass
            self.channel.close()
            self.channel = None
        if self._warden is not None:  # after the state directory went: it has nothing left to do
            self._warden.close()
            self._warden = None

    # ---- cells -----------------------------------------------------------
    def run(
        self,
        code: str,
        on_output: OutputCallback,
        on_input: InputCallback | None = None,
        timeout: float | None = None,
        isolated: bool = False,
        on_display: DisplayCallback | None = None,
    ) -> CommandResult:
        """Run one cell; stream its output; return its outcome.  ``isolated``: in a
        subshell that hands back only data (see ``framing.cell_lines``)."""
        if self.channel is None:
            raise ShellError("the shell is not running")
        self._seq += 1
        cell = _Cell(self._seq, new_token(), time.monotonic() + timeout if timeout else None, isolated=isolated,
                     on_display=on_display, code=code)
        output = _Output(on_output)
        self._tokens[cell.seq] = {cell.token}
        self._tokens.pop(cell.seq - 64, None)  # markers that late are not coming
        with self._lock:
            self._interrupt_at = None
            self._running = True
        try:
            try:
                line = cell_lines(code, cell.seq, self.flavour, on_input is not None, self.nonce, cell.token,
                                  isolated)
                self.channel.write(line.encode())
            except ChannelClosed:
                return self._ended(cell.outcome)
            ended = self._wait(cell, output, on_input)
            if ended is not None:
                return ended
        finally:
            if cell.held[1]:
                output.write(*cell.held)
            output.flush()
            with self._lock:
                if self._interrupt_at is not None:
                    cell.outcome.interrupted = True
                self._running = False
                self._interrupt_at = None
        if cell.outcome.interrupted:
            if cell.outcome.status == 0:
                cell.outcome.status = 130
            self._reap()
        return cell.outcome

    def _wait(self, cell: _Cell, output: _Output, on_input: InputCallback | None) -> CommandResult | None:
        """Read until the cell's end markers; a result when the shell is gone instead."""
        assert self.channel is not None
        outcome = cell.outcome
        while len(cell.ended) < 2:
            now = time.monotonic()
            if cell.deadline is not None and now >= cell.deadline and not outcome.interrupted:
                outcome.timed_out = True
                self.interrupt()
            wait = 0.2
            if cell.deadline is not None and not outcome.timed_out:
                wait = min(wait, max(cell.deadline - now, 0))
            with self._lock:
                interrupt_at = self._interrupt_at
            if (interrupt_at is not None or now - cell.heard >= PROBE_AFTER) and now - cell.asked >= 1.0:
                cell.asked = now
                why = self._unreachable()
                if why:
                    return self._abandon(outcome, why)
            if interrupt_at is not None:
                outcome.interrupted = True
                if now - interrupt_at >= UNRESPONSIVE_AFTER:
                    # a target that does not answer side commands either is not waited on to close
                    stop = self._abandon if self.channel.silent else self._stop
                    return stop(outcome, f"the shell did not finish the cell {UNRESPONSIVE_AFTER:.0f} s "
                                         "after the interrupt, so it was stopped")
                cell.escalated = self._escalate(interrupt_at, cell.escalated)
                self._send_fallback(cell)
                wait = min(wait, 0.05)
            wait = output.flush_due(now, wait)
            try:
                events = self.channel.read(wait)
            except ChannelClosed:
                events = [(STDOUT, b""), (STDERR, b"")]
            closed = {stream for stream, data in events if not data}
            for stream, data in events:
                if data:
                    self._take(stream, data, cell, output, on_input)
                    cell.heard = now
            if closed:
                # the shell is gone: what it wrote on the other stream before it went still counts
                self._drain(closed, cell, output)
                return self._ended(outcome)
            verdict = self._watch(cell, now)
            if verdict is not None:
                return verdict
        return None

    def _send_fallback(self, cell: _Cell) -> None:
        """After an interrupt: the line that ends the cell if the interrupt
        abandoned its command line (with a token of its own)."""
        if cell.fallback or self.channel is None:
            return
        cell.fallback = new_token()
        self._tokens[cell.seq].add(cell.fallback)
        try:
            self.channel.write(fallback_line(cell.seq, self.flavour, self.nonce, cell.fallback).encode())
        except ChannelClosed:
            pass

    def _watch(self, cell: _Cell, now: float) -> CommandResult | None:
        """Ask from outside the shell, while a cell is silent, whether the shell
        is gone or back at its prompt without having ended the cell (a cell broke
        the driver); either ends the cell instead of a wait forever."""
        if not self._stdin or now - max(cell.heard, cell.probed) < PROBE_AFTER:
            return None
        assert self.channel is not None
        cell.probed = now
        status = self.channel.run_aside(idle_probe(self.pid, self._stdin), timeout=PROBE_TIMEOUT).status
        if status == 255:  # no answer (the target may be frozen, or only busy)
            cell.unanswered = cell.unanswered or now
            if now - cell.unanswered >= SILENT_TARGET_AFTER:
                return self._abandon(cell.outcome, f"the target did not answer for {SILENT_TARGET_AFTER:.0f} s")
            return None
        cell.unanswered = 0.0
        if status == PROBE_GONE:
            cell.outcome.status = cell.outcome.status or 137
            return self._stop(cell.outcome, "the shell ended (it was killed)")
        cell.idle = cell.idle + 1 if status in (0, PROBE_NO_PROCESSES) else 0
        if cell.idle < 2:
            return None
        if status == PROBE_NO_PROCESSES:
            cell.outcome.status = cell.outcome.status or 254
            return self._stop(cell.outcome, "the shell could not start another process (its cgroup reached its "
                                            "limit of processes: a fork bomb?), so it was stopped")
        cell.outcome.framing = "the cell broke the shell's framing (it changed what the driver relies on)"
        cell.outcome.status = cell.outcome.status or 255
        return self._stop(cell.outcome, "the cell broke the shell's framing, so the shell was stopped")

    def _take(self, stream: int, data: bytes, cell: _Cell, output: _Output,
              on_input: InputCallback | None) -> None:
        """Pass a chunk's output on and act on its markers."""
        if stream in self._isolated_scanners:
            if not cell.isolated:  # a process an isolated cell left running: not this cell's output
                cell.outcome.stray_output += len(data)
                return
            scanner = self._isolated_scanners[stream]
            stream = STDOUT if stream == ISOLATED_OUT else STDERR
        else:
            scanner = self._out if stream == STDOUT else self._err
        name = "stdout" if stream == STDOUT else "stderr"
        for item in scanner.feed(data):
            if isinstance(item, bytes):
                if stream == STDERR and b"tcsetattr" in item:
                    item = _TTY_NOISE.sub(b"", item)
                    if not item:
                        continue
                if cell.outcome.needs_terminal:
                    continue  # what a full-screen program draws without a terminal is debris
                held_name, held = cell.held
                if held and held_name != name:
                    output.write(held_name, held)
                elif held:
                    item = held + item
                cell.held = (name, b"")
                switch = _FULL_SCREEN.search(item)
                if switch:
                    before = _ESCAPES.sub(b"", item[:switch.start()])
                    if before:
                        output.write(name, before)
                    self._stop_full_screen(cell)
                    continue
                escapes = _TRAILING_ESCAPES.search(item)
                if escapes:
                    cell.held = (name, escapes.group())
                    item = item[:escapes.start()]
                if item:
                    output.write(name, item)
            elif item.kind == "end":
                self._end_marker(stream, item, cell)
            elif item.kind == "in" and stream == STDOUT:
                output.flush()  # what the cell printed before it asked
                self._answer_input(item.fields[0], on_input)
            elif item.kind == "display" and stream == STDOUT and cell.on_display and len(item.fields) == 2:
                output.flush()  # what the cell printed before it comes first
                cell.on_display(item.fields[1], item.fields[0])

    def _stop_full_screen(self, cell: _Cell) -> None:
        """A program of the cell switched to a full-screen display: name it, and interrupt the cell."""
        named = [word for word in re.findall(r"[\w.+-]+", cell.code) if word in FULL_SCREEN_PROGRAMS]
        cell.outcome.needs_terminal = named[0] if named else "a program of this cell"
        self.interrupt()

    def _end_marker(self, stream: int, item: Marker, cell: _Cell) -> None:
        """An end marker: this cell's own, a late one of an earlier cell, or a forgery."""
        seq_text, _, token = item.fields[0].partition(".") if item.fields else ("", "", "")
        seq = int(seq_text) if seq_text.isdigit() else -1
        key = (seq, token, stream)
        if token not in self._tokens.get(seq, ()):
            cell.outcome.framing = "the cell's output held a forged end marker"
            return
        if key in self._seen:
            cell.outcome.framing = "an end marker came twice: an earlier cell's end was forged"
            return
        self._seen.add(key)
        if seq != cell.seq:
            if token != self._ended_by.get(seq) and self._ended_by.get(seq) == self._fallback_of.get(seq):
                cell.outcome.framing = f"cell {seq} went on after it was interrupted and wrote into later cells"
            return  # the end of an interrupted line that had already ended: expected
        if cell.ended and token != cell.ended_by:
            return  # the other token of this cell, after it ended by one
        cell.ended.add(stream)
        cell.ended_by = token
        self._ended_by[seq] = token
        if cell.fallback:
            self._fallback_of[seq] = cell.fallback
        if stream == STDOUT and len(item.fields) >= 3:
            cell.outcome.status = int(item.fields[1]) if item.fields[1].lstrip("-").isdigit() else 255
            cell.outcome.failed_commands = _parse_failed(item.fields[2])

    def _drain(self, closed: set[int], cell: _Cell, output: _Output, patience: float = 1.0) -> None:
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
                    self._take(stream, data, cell, output, None)
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
        if status == FORGED_INPUT and isinstance(self.channel, OrderedChannel) and self.channel.signed:
            outcome.framing = ("something else than the kernel wrote to the shell's input (its relay's pipe), "
                               "so the relay stopped the shell")
        self.close()  # also removes the state directory the driver made
        return outcome

    def _abandon(self, outcome: CommandResult, why: str) -> CommandResult:
        """The target cannot answer: end the cell without waiting on it; the
        shell is given up (its warden ends it once the connection closes)."""
        assert self.channel is not None
        self.channel.abandon()
        if self._warden is not None:
            self._warden.abandon()
        outcome.status = outcome.status or (130 if outcome.interrupted else 255)
        return self._stop(outcome, why)

    def _stop(self, outcome: CommandResult, why: str) -> CommandResult:
        """End the shell and everything it started; the cell ends with ``why``."""
        outcome.shell_ended = why
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
        channel = self.channel
        if channel is not None and self.pid:
            # The abort flag makes the shell drop the rest of the cell even when
            # the command catches SIGINT and exits normally.  Sent from a thread
            # of its own: a target that does not answer must not hold up the caller.
            abort = shlex.quote(f"{self.state_dir}/abort")
            threading.Thread(target=channel.run_aside, args=(f": > {abort}; kill -INT -{self.pid} 2>/dev/null",),
                             kwargs={"timeout": UNRESPONSIVE_AFTER}, daemon=True).start()

    def _reap(self) -> None:
        """Stop background jobs the interrupted cell started."""
        assert self.channel is not None
        self.channel.run_aside(f"rm -f {shlex.quote(self.state_dir + '/abort')}")
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
        # Everything below the shell (its process tree: also what left its
        # process group, as `setsid` and `timeout` do) but the jobs that
        # earlier cells left running in the background.
        if done == 0 and elapsed >= INTERRUPT_GRACE:
            self.channel.run_aside(descendants_kill(pid, "TERM", f"{self.state_dir}/jobs"), timeout=1.0)
            return 1
        if done == 1 and elapsed >= INTERRUPT_GRACE + KILL_GRACE:
            self.channel.run_aside(descendants_kill(pid, "KILL", f"{self.state_dir}/jobs")
                                   + f"; [ -e {abort} ] && kill -INT {pid}", timeout=1.0)
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
