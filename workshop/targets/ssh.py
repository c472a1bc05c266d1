"""``ssh://USER@HOST[:PORT][?key=PATH][&sudo=1]`` and ``ssh:ALIAS`` (from ssh_config)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import TargetError
from ..settings import Settings
from ..shell.channels import Transport
from . import Target

USAGE = "ssh://USER@HOST[:PORT][?key=PATH][&sudo=1] | ssh:HOSTALIAS[?sudo=1] (from ~/.ssh/config)"


@dataclass
class SSHTarget(Target):
    """A machine reached over SSH; subclasses say how it is found."""

    host: str = ""
    port: int = 22
    user: str = ""
    key: str | None = None
    doctor_needs = frozenset({"setup: SSH targets"})

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}" if self.user else f"{self.host}:{self.port}"

    def address(self) -> tuple:
        return (self.host, self.port, self.user, self.key)

    def open(self) -> Transport:
        from ..shell.ssh import Endpoint, SSHConnection  # paramiko: only kernels that use SSH pay its import

        return SSHConnection(Endpoint(self.host, self.port, self.user, self.key, self.sudo))

    def point_at(self, info: dict) -> None:
        """Connect through ``info``, in the fields ``bakerx ssh-info --format json``
        gives (hostname, port, user, private_key)."""
        self.host, self.port = info["hostname"], int(info["port"])
        self.user, self.key = info["user"], info["private_key"]

    def start_hint(self) -> str:
        return "start the machine and its sshd; check host, port, user and key in the target"

    def as_record(self) -> dict:
        return {**super().as_record(), "host": self.host, "port": self.port, "user": self.user}


TARGET = SSHTarget


def parse(spec: str, settings: Settings) -> SSHTarget:
    if spec.startswith("ssh://"):
        return _parse_url(spec)
    return _from_ssh_config(spec, spec[4:], settings)


def _parse_url(spec: str) -> SSHTarget:
    parts = urlsplit(spec)
    if not parts.hostname:
        raise TargetError(f"'{spec}' names no host; write ssh://USER@HOST[:PORT][?key=PATH]")
    try:
        port = parts.port or 22
    except ValueError:
        raise TargetError(f"'{spec}' has a bad port; write ssh://USER@HOST:PORT") from None
    query = parse_qs(parts.query)
    key = query.get("key", [None])[0]
    unknown = set(query) - {"key", "sudo"}
    if unknown:
        raise TargetError(
            f"'{spec}': unknown option(s) {', '.join(sorted(unknown))}; the options are ?key=PATH and &sudo=1"
        )
    user = unquote(parts.username) if parts.username else getpass.getuser()
    return SSHTarget(spec=spec, kind="ssh", name=spec, host=parts.hostname, port=port, user=user,
                  key=os.path.expanduser(key) if key else None, sudo=_sudo_option(spec, query))


def _sudo_option(spec: str, query: dict[str, list[str]]) -> bool:
    value = query.get("sudo", ["0"])[-1].lower()
    if value in ("1", "yes", "true"):
        return True
    if value in ("0", "no", "false"):
        return False
    raise TargetError(f"'{spec}': sudo={value} is not a choice; write sudo=1 or sudo=0")


def _from_ssh_config(spec: str, alias: str, settings: Settings) -> SSHTarget:
    import paramiko

    alias, _, options = alias.partition("?")
    query = parse_qs(options)
    if set(query) - {"sudo"}:
        raise TargetError(f"'{spec}': the only option of ssh:HOSTALIAS is ?sudo=1")
    if not alias:
        raise TargetError("'ssh:' needs a host alias from ~/.ssh/config, e.g. ssh:myvm")
    config_path = Path(settings.ssh_config)
    if not config_path.exists():
        raise TargetError(f"'{spec}': {config_path} does not exist; add a 'Host {alias}' entry to it")
    config = paramiko.SSHConfig.from_path(str(config_path))
    if alias not in config.get_hostnames():
        raise TargetError(f"'{spec}': no 'Host {alias}' entry in {config_path}")
    entry = config.lookup(alias)
    keys = entry.get("identityfile") or []
    return SSHTarget(spec=spec, kind="ssh-config", name=alias, host=entry.get("hostname", alias),
                  port=int(entry.get("port", 22)), user=entry.get("user") or getpass.getuser(),
                  key=os.path.expanduser(keys[0]) if keys else None, sudo=_sudo_option(spec, query))
