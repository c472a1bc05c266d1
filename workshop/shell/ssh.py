"""One pinned SSH connection: the shell's channel, its side commands, uploads.

Everything in workshop that speaks SSH goes through :class:`SSHConnection`:
the kernel's shell on an SSH target, the VM's first login and shutdown, and
``workshop doctor``.  Host keys are pinned in the tool's own known-hosts file,
on first use (``pin="first-use"``) or only as written there before (``pin="strict"``,
for the built-in VM whose key the tool made).
"""

from __future__ import annotations

import base64
import hashlib
import select
import shlex
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ..errors import ChannelClosed, TargetError
from ..paths import known_hosts_file
from . import known_hosts
from .channels import STDERR, STDOUT, Channel, Entry, Transport
from .result import CommandResult

_WINDOW = 1 << 23  # output streams without waiting for acks; paramiko buffers at most this
_PACKET = 1 << 15
_READ_SIZE = 1 << 20


def host_pattern(host: str, port: int) -> str:
    """How known_hosts names a host: bare on port 22, else [host]:port."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _prefer_gcm(*args, **kwargs) -> paramiko.Transport:
    """A transport that prefers AES-GCM: one pass for encryption and integrity
    instead of CTR plus a separate HMAC, which raises streaming throughput.
    Servers without GCM still get the usual ciphers."""
    transport = paramiko.Transport(*args, **kwargs)
    options = transport.get_security_options()
    ciphers = list(options.ciphers)
    gcm = [c for c in ciphers if c.endswith("-gcm@openssh.com")]
    options.ciphers = tuple(gcm + [c for c in ciphers if c not in gcm])
    return transport


class _PinOnFirstUse(paramiko.MissingHostKeyPolicy):
    """First contact pins the host's key in the tool's own known-hosts file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client, hostname, key):  # noqa: D401 - paramiko's API
        # Under the file's lock: another kernel may have pinned this host meanwhile.
        known_hosts.pin(hostname, key, Path(self.path))


@dataclass
class Endpoint:
    """Where an SSH connection goes and who logs in."""

    host: str
    port: int = 22
    user: str = ""
    key: str | None = None
    # Run the shell and uploads as root through passwordless sudo when the
    # login user is not root: the workshop's mounts, namespaces and cgroups need root.
    sudo: bool = False


class SSHConnection(Transport):
    """A logged-in SSH client for one endpoint; reconnects on demand."""

    # a second session beside the shell's on the same connection (_CONTROL_LOOP), as root with sudo
    side_commands = "on the SSH host, through a control shell beside the cell shell"

    def __init__(self, endpoint: Endpoint, connect_timeout: float = 10.0, pin: str = "first-use") -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.pin = pin
        self.client: paramiko.SSHClient | None = None
        self.host_key_fingerprint: str | None = None
        self._lock = threading.Lock()
        self._sftp: paramiko.SFTPClient | None = None  # kept open: each listing is then one round trip
        self._sftp_lock = threading.Lock()

    @property
    def active(self) -> bool:
        transport = self.client.get_transport() if self.client else None
        return bool(transport and transport.is_active())

    def connect(self) -> paramiko.SSHClient:
        with self._lock:
            if self.active:
                assert self.client is not None
                return self.client
            self.close()
            self.client = self._open()
            return self.client

    def _open(self) -> paramiko.SSHClient:
        t = self.endpoint
        path = known_hosts_file()
        path.touch(mode=0o600, exist_ok=True)
        client = paramiko.SSHClient()
        client.load_host_keys(str(path))
        client.set_missing_host_key_policy(
            _PinOnFirstUse(str(path)) if self.pin == "first-use" else paramiko.RejectPolicy())
        where = f"{t.host}:{t.port}"
        try:
            client.connect(
                t.host,
                port=t.port,
                username=t.user,
                key_filename=t.key,
                look_for_keys=t.key is None,
                allow_agent=t.key is None,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                transport_factory=_prefer_gcm,
            )
        except paramiko.BadHostKeyException as exc:
            raise TargetError(
                f"the host key of {where} has changed (pinned {fingerprint(exc.expected_key)}, "
                f"offered {fingerprint(exc.key)}); refusing to connect. If the machine was "
                f"rebuilt, delete the line for {host_pattern(t.host, t.port)} from {path} "
                f"(ssh-keygen -R '{host_pattern(t.host, t.port)}' -f {path}) and try again."
            ) from None
        except paramiko.AuthenticationException:
            how = f"the key {t.key}" if t.key else "the keys in ~/.ssh and the agent"
            raise TargetError(
                f"could not log in to {where} as {t.user} with {how}; "
                "give a key with ssh://USER@HOST:PORT?key=PATH"
            ) from None
        except FileNotFoundError:
            raise TargetError(f"the key file {t.key} does not exist; check ?key=PATH") from None
        except TimeoutError:
            raise TargetError(f"cannot reach {where}: no answer within {self.connect_timeout:.0f} s; is the machine up?") from None
        except (OSError, paramiko.SSHException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise TargetError(f"cannot reach {where}: {reason}; is the machine up and sshd running?") from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(10)
        self.host_key_fingerprint = fingerprint(transport.get_remote_server_key())
        return client

    def close(self) -> None:
        self._sftp = None
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None

    def channel(self, command: str) -> SSHChannel:
        client = self.connect()
        try:
            return SSHChannel(self, client, command)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ChannelClosed(f"could not open a channel: {exc or type(exc).__name__}") from None

    def exec(self, command: str, stdin: bytes = b"", timeout: float = 60) -> CommandResult:
        """Run ``command`` on an exec channel of its own (as root when the
        endpoint says sudo) and wait for it; raises TargetError when the
        connection cannot be made."""
        client = self.connect()
        if self.endpoint.sudo:
            command = through_sudo(command)
        try:
            cin, cout, cerr = client.exec_command(command, timeout=timeout)
            if stdin:
                cin.write(stdin)
            cin.channel.shutdown_write()
            out, err = cout.read(), cerr.read()
            status = cout.channel.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            return CommandResult(255, stderr=f"the SSH command failed: {exc or type(exc).__name__}")
        return CommandResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult:
        """Write ``data`` to ``path`` on the remote machine with ``cat``."""
        command = f"cat > {shlex.quote(path)}"
        if mode:
            command += f" && chmod {mode} {shlex.quote(path)}"
        return self.exec(command, stdin=data, timeout=300)

    # Files read over SFTP on the open connection: one round trip, not a command
    # through the shell (over a second each on a VM without KVM).  Not for an
    # endpoint that becomes root with sudo: the login user may not see what the shell sees.
    def list_dir(self, path: str) -> list[Entry] | None:
        def listing(sftp: paramiko.SFTPClient) -> list[Entry]:
            found = []
            for attr in sftp.listdir_attr(path):
                mode = attr.st_mode or 0
                if stat.S_ISLNK(mode):
                    try:
                        mode = sftp.stat(f"{path.rstrip('/')}/{attr.filename}").st_mode or 0
                    except OSError:  # a dangling link: a file, as for bash
                        pass
                found.append(Entry(attr.filename, stat.S_ISDIR(mode)))
            return found

        return self._with_sftp(listing, missing=[])

    def read_link(self, path: str) -> str | None:
        return self._with_sftp(lambda sftp: sftp.readlink(path), missing=None)

    def _with_sftp(self, read, missing):
        if self.endpoint.sudo or not self.active:
            return None
        with self._sftp_lock:
            try:
                if self._sftp is None:
                    assert self.client is not None
                    self._sftp = self.client.open_sftp()
                return read(self._sftp)
            except FileNotFoundError:
                return missing
            except (OSError, EOFError, paramiko.SSHException):  # no SFTP there, or not allowed: ask the shell
                self._sftp = None
                return None


# A second, persistent shell beside the cell shell runs side commands (signals,
# input answers) one line at a time: opening a channel per command costs a fork
# of sshd and tens to hundreds of milliseconds, too slow for an interrupt.
_CONTROL_LOOP = (
    "exec sh -c 'while IFS= read -r l; do eval \"$l\" </dev/null >/dev/null 2>&1; "
    "echo \"$?\"; done'"
)


def through_sudo(command: str) -> str:
    """``command`` as root: through passwordless sudo when the login user is not
    root, or a clear message and exit status 126 when sudo would ask a password."""
    inner = shlex.quote(command)
    return (
        'if [ "$(id -u)" != 0 ]; then '
        "sudo -n true 2>/dev/null || { echo \"workshop: $(id -un) cannot become root through sudo "
        "without a password; allow it in /etc/sudoers.d or connect as root\" >&2; exit 126; }; "
        # setsid: the shell leads its own process group, which interrupts signal
        "if command -v setsid >/dev/null; then exec sudo -n setsid -w /bin/sh -c "
        f"{inner}; else exec sudo -n /bin/sh -c {inner}; fi; fi; {command}"
    )


def printf_bytes(data: bytes) -> str:
    """A one-line `printf` command that writes exactly ``data``."""
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:_-+=/@"
    body = "".join(chr(b) if b in safe else f"\\{b:03o}" for b in data)
    return f"printf '{body}'"


class SSHChannel(Channel):
    def __init__(self, conn: SSHConnection, client: paramiko.SSHClient, command: str) -> None:
        self.conn = conn
        self.transport = client.get_transport()
        assert self.transport is not None
        control = _CONTROL_LOOP
        if conn.endpoint.sudo:
            command, control = through_sudo(command), through_sudo(control)
        # bounded: a frozen machine never confirms a channel (paramiko waits an hour)
        self.chan = self.transport.open_session(window_size=_WINDOW, max_packet_size=_PACKET,
                                                timeout=conn.connect_timeout)
        self.chan.exec_command(command)
        self._eof = False
        self._control = self.transport.open_session(timeout=conn.connect_timeout)
        self._control.exec_command(control)
        self._control_lock = threading.Lock()
        self._control_buf = b""
        self._owed = 0  # answers of the control loop still to come
        self._abandoned = False  # the target stopped answering: nothing waits on it any more

    def write(self, data: bytes) -> None:
        try:
            self.chan.sendall(data)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ChannelClosed(str(exc)) from exc

    def read(self, timeout: float | None) -> list[tuple[int, bytes]]:
        if self._eof:
            raise ChannelClosed("the shell is gone")
        chan = self.chan
        select.select([chan], [], [], timeout)
        out: list[tuple[int, bytes]] = []
        while chan.recv_stderr_ready():
            out.append((STDERR, chan.recv_stderr(_READ_SIZE)))
        while chan.recv_ready():
            out.append((STDOUT, chan.recv(_READ_SIZE)))
        if not out and (chan.closed or chan.eof_received or not self.transport.is_active()):
            if not (chan.recv_ready() or chan.recv_stderr_ready()):
                self._eof = True
                return [(STDOUT, b""), (STDERR, b"")]
        return out

    def run_aside(self, command: str, stdin: bytes = b"", timeout: float = 30) -> CommandResult:
        if stdin:
            command = f"{printf_bytes(stdin)} | {{ {command}; }}"
        return CommandResult(self._control_status(command.replace("\n", " ") + "\n", timeout))

    def abandon(self) -> None:
        self._abandoned = True

    @property
    def silent(self) -> bool:
        return self._owed > 0

    def _control_status(self, line: str, timeout: float) -> int:
        """Send one line to the control loop; the exit status it answers (255: no
        answer within ``timeout``, or the channel was abandoned meanwhile)."""
        deadline = time.monotonic() + timeout
        while not self._control_lock.acquire(timeout=0.1):  # another side command waits for its answer
            if self._abandoned or time.monotonic() >= deadline:
                return 255
        try:
            if self._abandoned:
                return 255
            self._control.sendall(line.encode())
            self._owed += 1
            while True:
                status, newline, rest = self._control_buf.partition(b"\n")
                if newline:
                    self._control_buf = rest
                    self._owed -= 1
                    if self._owed == 0:
                        break
                    continue  # the late answer of a command that was given up on
                if self._abandoned or self._control.closed or time.monotonic() >= deadline:
                    return 255
                self._control.settimeout(min(0.2, max(deadline - time.monotonic(), 0.01)))
                try:
                    data = self._control.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return 255
                self._control_buf += data
        except (OSError, EOFError, paramiko.SSHException):
            return 255
        finally:
            self._control_lock.release()
        try:
            return int(status)
        except ValueError:
            return 255

    def _has_exit_status(self) -> bool:
        # paramiko's exit_status_ready() is also true for a channel that was
        # merely closed; only the status event says the shell really exited.
        return self.chan.status_event.is_set() and self.chan.exit_status != -1

    def exit_status(self) -> int | None:
        if self._has_exit_status():
            return self.chan.exit_status
        # EOF comes before the exit-status message: only a closed channel or a
        # dead connection means no status will come.
        if self.chan.closed or not self.transport.is_active():
            return 255
        return None

    def lost_reason(self) -> str | None:
        if not self._has_exit_status():
            t = self.conn.endpoint
            return f"the SSH connection to {t.host}:{t.port} was lost"
        return None

    def close(self) -> None:
        for chan in (self.chan, self._control):
            try:
                chan.close()
            except Exception:
                pass
