"""A real OpenSSH server on 127.0.0.1 for tests and benchmarks.

It runs as the current user (root in CI), with host and client keys made for
the occasion in a private directory, and is stopped by ``stop()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _established_inodes(port: int) -> set[int]:
    """Socket inodes of the established TCP connections to local ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode:
                inodes.add(inode)
    return inodes


def _descendants(root: int) -> list[int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = []
    for pid in parent:
        p = parent[pid]
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root:
            found.append(pid)
    return found


def find_sshd() -> str | None:
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@dataclass
class Sshd:
    port: int
    user: str
    key: str  # client private key path
    host_key_pub: str
    dir: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}?key={self.key}"

    def session_pids(self) -> list[int]:
        """The processes that hold a client's connection to this server, sorted.

        They are the ones to kill to drop a connection. Which they are depends
        on OpenSSH's version: up to 9.7 the listener's child (``sshd: USER@notty``)
        does; from 9.8 on the listener starts ``sshd-session``, whose privileged
        monitor forks the process that serves the user, and killing the monitor
        alone leaves the connection up. So: the listener's descendants that have
        an established TCP socket on this server's port open.
        """
        sockets = {f"socket:[{inode}]" for inode in _established_inodes(self.port)}
        held = []
        for pid in _descendants(self.proc.pid):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                        held.append(pid)
                        break
                except OSError:
                    continue
        return sorted(held)

    def descendant_pids(self) -> list[int]:
        """Every process below the listener (the sessions and what they run)."""
        return sorted(_descendants(self.proc.pid))

    def url_for(self, user: str, **options: str) -> str:
        """The target spec that logs in as ``user`` with the same client key."""
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"ssh://{user}@127.0.0.1:{self.port}?key={self.key}{extra}"

    def authorize(self, user: str) -> None:
        """Let ``user`` (an account on this machine) log in with the client key."""
        keys = self.dir / "users" / user
        shutil.copy(self.dir / "client.pub", keys)
        os.chmod(keys, 0o644)

    def kill_listener(self) -> None:
        """kill -9 the listener only, as a crash would: the connections it served stay up."""
        self.proc.kill()
        self.proc.wait()

    def start_listener(self) -> None:
        """The listener again, on the same port with the same host key (after kill_listener)."""
        self.proc = _listen(self.dir)

    def stop(self) -> None:
        for pid in self.descendant_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_sshd() -> Sshd:
    sshd = find_sshd()
    if sshd is None:
        raise RuntimeError("sshd not found; install openssh-server (apt-get install openssh-server)")
    base = Path(tempfile.mkdtemp(prefix="workshop-sshd-"))
    os.chmod(base, 0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_ed25519")], check=True
    )
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "client")], check=True)
    shutil.copy(base / "client.pub", base / "authorized_keys")
    # Other users' keys live in users/NAME, readable by them (see add_user).
    (base / "users").mkdir(mode=0o755)
    os.chmod(base, 0o711)
    port = _free_port()
    user = os.environ.get("USER") or "root"
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {base / 'host_ed25519'}",
                f"AuthorizedKeysFile {base / 'authorized_keys'} {base / 'users'}/%u",
                f"PidFile {base / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "PrintMotd no",
                "LogLevel ERROR",
                "MaxSessions 100",
                "MaxStartups 100",
                "Subsystem sftp internal-sftp",
                # bash sources ~/.bashrc for a command sshd runs unless SHLVL says it is nested:
                # this machine's dotfiles (a version manager's rehash, say, which waits on a lock
                # that a session these tests kill can leave behind) are not the tests' business
                "SetEnv SHLVL=1",
                "",
            ]
        )
    )
    proc = _listen(base)
    return Sshd(
        port=port,
        user=user,
        key=str(base / "client"),
        host_key_pub=(base / "host_ed25519.pub").read_text(),
        dir=base,
        proc=proc,
    )


def _listen(base: Path) -> subprocess.Popen:
    """sshd with the configuration in ``base``, once it accepts connections."""
    Path("/run/sshd").mkdir(exist_ok=True)
    config = base / "sshd_config"
    port = int(next(line.split()[1] for line in config.read_text().splitlines() if line.startswith("Port ")))
    proc = subprocess.Popen(
        [find_sshd() or "sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "sshd.log", "ab"),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (base / "sshd.log").read_text()) from None
            time.sleep(0.05)
    return proc
