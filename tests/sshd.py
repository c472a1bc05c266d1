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
        """The per-connection sshd processes (children of the listener)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def url_for(self, user: str, **options: str) -> str:
        """The target spec that logs in as ``user`` with the same client key."""
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"ssh://{user}@127.0.0.1:{self.port}?key={self.key}{extra}"

    def authorize(self, user: str) -> None:
        """Let ``user`` (an account on this machine) log in with the client key."""
        keys = self.dir / "users" / user
        shutil.copy(self.dir / "client.pub", keys)
        os.chmod(keys, 0o644)

    def stop(self) -> None:
        for pid in self.session_pids():
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
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "sshd.log", "wb"),
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
    return Sshd(
        port=port,
        user=user,
        key=str(base / "client"),
        host_key_pub=(base / "host_ed25519.pub").read_text(),
        dir=base,
        proc=proc,
    )
