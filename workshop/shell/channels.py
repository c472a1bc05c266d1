"""Byte pipes to a shell process: on this machine, or over one SSH connection.

A channel knows nothing about cells; it moves bytes and runs short side
commands (signals, input) next to the shell.  The framing lives in framing.py and persistent.py.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import ChannelClosed
from .result import CommandResult

STDOUT = 1
STDERR = 2
# what an isolated cell writes (a rerun's student cells), kept apart by the relay
ISOLATED_OUT = 3
ISOLATED_ERR = 4
_F_SETPIPE_SZ = 1031  # from <linux/fcntl.h>; bigger pipes mean fewer wakeups
_READ_SIZE = 1 << 20


class Entry(NamedTuple):
    """A name in a directory, and whether it is one (links followed)."""

    name: str
    is_dir: bool


class Channel(ABC):
    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def read(self, timeout: float | None) -> list[tuple[int, bytes]]:
        """Wait up to ``timeout`` s; return (stream, data) pairs, b"" for EOF."""

    @abstractmethod
    def run_aside(self, command: str, stdin: bytes = b"", timeout: float = 30) -> CommandResult:
        """Run a short command on the same target, beside the shell (its
        output is not kept: side commands speak through files and status)."""

    def abandon(self) -> None:
        """The target stopped answering (a frozen machine): side commands no
        longer wait for it, so that closing the channel cannot hang."""
        return None  # a local shell's side commands never wait on another machine

    @property
    def silent(self) -> bool:
        """Whether a side command is still waiting for its answer from the target."""
        return False

    @abstractmethod
    def exit_status(self) -> int | None:
        """The shell's exit status once it has ended, else None."""

    @abstractmethod
    def close(self) -> None: ...

    def lost_reason(self) -> str | None:
        """Why the channel died, when it was not the shell exiting."""
        return None


class Transport(ABC):
    """How a target is reached: it opens the shell's channel and uploads files.

    Each transport says where the side commands of its channels run
    (:meth:`Channel.run_aside`: interrupts, input answers, idle probes).  They
    must run where the shell runs — on its machine, in its namespaces — since
    they name the shell's processes and files: a channel that ran them on the
    kernel's machine instead would signal the wrong processes.
    """

    # The remote host's key, once connected (None on this machine).
    host_key_fingerprint: str | None = None

    @property
    @abstractmethod
    def side_commands(self) -> str:
        """Where the side commands of this transport's channels run, said as a place."""

    @abstractmethod
    def channel(self, command: str) -> Channel:
        """Start ``command`` (a shell) with byte pipes to it."""

    @abstractmethod
    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult:
        """Write ``data`` to ``path`` on the target (``mode``: octal, e.g. "755")."""

    @abstractmethod
    def exec(self, command: str, stdin: bytes = b"", timeout: float = 60) -> CommandResult:
        """Run one command (sh syntax) on the target, outside any shell session, and wait."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the connection (shells opened on it end)."""

    # ---- reading the target's files without its shell (for Tab, while the shell is slow or busy) ----
    def list_dir(self, path: str) -> list[Entry] | None:
        """The entries of the directory ``path`` on the target ([] when there is none
        there); None when this transport cannot read it itself (ask the shell then)."""
        return None

    def read_link(self, path: str) -> str | None:
        """Where the symbolic link ``path`` on the target points (``/proc/PID/cwd``:
        a process's working directory); None when it cannot be read this way."""
        return None


class LocalTransport(Transport):
    """This machine: shells are child processes, uploads are plain writes."""

    side_commands = "on this machine, as child processes of the kernel"

    def channel(self, command: str) -> Channel:
        return LocalChannel(command, aside=HERE)

    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult:
        try:
            with open(path, "wb") as out:
                out.write(data)
            if mode:
                os.chmod(path, int(mode, 8))
        except OSError as exc:
            return CommandResult(1, stderr=f"cannot write {path}: {exc.strerror or exc}")
        return CommandResult(0)

    def exec(self, command: str, stdin: bytes = b"", timeout: float = 60) -> CommandResult:
        return run_argv(["/bin/sh", "-c", command], stdin, timeout)

    def close(self) -> None:
        pass  # each shell is a child process; LocalChannel.close ends it

    def list_dir(self, path: str) -> list[Entry] | None:
        try:
            with os.scandir(path) as entries:
                return [Entry(e.name, _is_dir(e)) for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError:  # not ours to read: the shell may be (it can run as another user)
            return None

    def read_link(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except OSError:
            return None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # a link to a directory counts, as for bash
    except OSError:
        return False


def run_argv(argv: Sequence[str], stdin: bytes = b"", timeout: float = 60) -> CommandResult:
    """A program run on this machine to its end, as a transport's ``exec`` gives it."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return CommandResult(124, timed_out=True, stderr=f"no answer within {timeout:g} s")
    except OSError as exc:
        return CommandResult(127, stderr=str(exc))
    return CommandResult(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))


def _default_signals() -> None:
    # The kernel ignores SIGINT and children inherit that; the shell needs it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


# Side commands of a shell that runs on this machine: a plain sh.
HERE = ("/bin/sh", "-c")


class LocalChannel(Channel):
    """A process on this machine, in its own session and process group, that runs
    the shell (itself, or a command such as ``docker exec`` that runs it elsewhere).
    ``aside`` is the command line that runs a side command (its last argument)
    where that shell is: :data:`HERE` when the shell is this process."""

    def __init__(self, command: str, *, aside: Sequence[str], env: dict[str, str] | None = None,
                 cwd: str | None = None):
        self.aside = tuple(aside)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_default_signals,
            env=env,
            cwd=cwd,
            bufsize=0,
        )
        self._fds = {self.proc.stdout.fileno(): STDOUT, self.proc.stderr.fileno(): STDERR}
        self._selector = selectors.DefaultSelector()
        for fd in self._fds:
            try:
                fcntl.fcntl(fd, _F_SETPIPE_SZ, _READ_SIZE)
            except OSError:
                pass
            self._selector.register(fd, selectors.EVENT_READ)

    def write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ValueError) as exc:
            raise ChannelClosed("the shell is gone") from exc

    def read(self, timeout: float | None) -> list[tuple[int, bytes]]:
        if not self._fds:
            raise ChannelClosed("the shell is gone")
        out = []
        for key, _ in self._selector.select(timeout):
            fd = key.fd
            data = os.read(fd, _READ_SIZE)
            if not data:
                self._selector.unregister(fd)
            out.append((self._fds[fd], data))
            if not data:
                del self._fds[fd]
        return out

    def run_aside(self, command: str, stdin: bytes = b"", timeout: float = 30) -> CommandResult:
        try:
            done = subprocess.run(
                [*self.aside, command], input=stdin, capture_output=True, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return CommandResult(124, timed_out=True)
        return CommandResult(done.returncode)

    def exit_status(self) -> int | None:
        return self.proc.poll()

    def close(self) -> None:
        # EOF on its input ends an idle shell at once; SIGHUP then reaches what
        # it left running in its process group (as when a terminal closes).
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(0.5)
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGHUP, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            if sig == signal.SIGHUP:
                try:
                    self.proc.wait(0.5)
                except subprocess.TimeoutExpired:
                    continue
        self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        self._selector.close()
