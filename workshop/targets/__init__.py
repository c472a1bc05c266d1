"""Where cells run: a target spec names this machine or an SSH connection."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import TargetError

TARGET_USAGE = (
    "targets: local | ssh://USER@HOST[:PORT][?key=PATH][&sudo=1] | ssh:HOSTALIAS[?sudo=1] (from ~/.ssh/config)"
    " | qemu:NAME (the built-in micro VM) | bakerx:NAME | vagrant:NAME"
)


@dataclass
class Target:
    spec: str
    kind: str  # "local", "ssh", "ssh-config"
    name: str = ""
    host: str = ""
    port: int = 22
    user: str = ""
    key: str | None = None
    # Run the shell as root through passwordless sudo when the login user is not
    # root: the workshop's mounts, namespaces and cgroups need root.
    sudo: bool = False
    # filled in once connected
    host_key_fingerprint: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def describe(self) -> str:
        if self.is_local:
            return "local"
        return f"{self.user}@{self.host}:{self.port}" if self.user else f"{self.host}:{self.port}"

    def prepare(self, progress=None) -> None:
        """Make the target ready before a shell starts on it (a VM boots, a
        port is looked up); ``progress(text)`` reports steps. Raises TargetError."""

    def point_at(self, info: dict) -> None:
        """Connect through ``info``, in the fields ``bakerx ssh-info --format json``
        gives (hostname, port, user, private_key)."""
        self.host, self.port = info["hostname"], int(info["port"])
        self.user, self.key = info["user"], info["private_key"]

    def as_record(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name or self.spec,
            "host": None if self.is_local else self.host,
            "port": None if self.is_local else self.port,
            "user": None if self.is_local else self.user,
            "sudo": self.sudo,
            "host_key_fingerprint": self.host_key_fingerprint,
        }


def parse_target(spec: str) -> Target:
    """Turn a target spec into a Target, resolving ssh:ALIAS from ~/.ssh/config."""
    spec = spec.strip()
    if spec in ("", "local"):
        return Target(spec="local", kind="local", name="local")
    if spec.startswith("ssh://"):
        return _parse_ssh_url(spec)
    if spec.startswith("ssh:"):
        return _from_ssh_config(spec, spec[4:])
    kind, _, name = spec.partition(":")
    if kind == "qemu":
        from .qemu import qemu_target

        return qemu_target(spec, name)
    if kind == "bakerx":
        from .bakerx import bakerx_target

        return bakerx_target(spec, name)
    if kind == "vagrant":
        from .vagrant import vagrant_target

        return vagrant_target(spec, name)
    raise TargetError(f"unknown target '{spec}'; {TARGET_USAGE}")


def _parse_ssh_url(spec: str) -> Target:
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
    user = unquote(parts.username) if parts.username else _default_user()
    return Target(
        spec=spec,
        kind="ssh",
        name=spec,
        host=parts.hostname,
        port=port,
        user=user,
        key=os.path.expanduser(key) if key else None,
        sudo=_sudo_option(spec, query),
    )


def _sudo_option(spec: str, query: dict[str, list[str]]) -> bool:
    value = query.get("sudo", ["0"])[-1].lower()
    if value in ("1", "yes", "true"):
        return True
    if value in ("0", "no", "false"):
        return False
    raise TargetError(f"'{spec}': sudo={value} is not a choice; write sudo=1 or sudo=0")


def _from_ssh_config(spec: str, alias: str) -> Target:
    import paramiko

    alias, _, options = alias.partition("?")
    query = parse_qs(options)
    if set(query) - {"sudo"}:
        raise TargetError(f"'{spec}': the only option of ssh:HOSTALIAS is ?sudo=1")
    if not alias:
        raise TargetError("'ssh:' needs a host alias from ~/.ssh/config, e.g. ssh:myvm")
    config_path = Path(os.environ.get("WORKSHOP_SSH_CONFIG", Path.home() / ".ssh" / "config"))
    if not config_path.exists():
        raise TargetError(f"'{spec}': {config_path} does not exist; add a 'Host {alias}' entry to it")
    config = paramiko.SSHConfig.from_path(str(config_path))
    if alias not in config.get_hostnames():
        raise TargetError(f"'{spec}': no 'Host {alias}' entry in {config_path}")
    entry = config.lookup(alias)
    keys = entry.get("identityfile") or []
    return Target(
        spec=spec,
        kind="ssh-config",
        name=alias,
        host=entry.get("hostname", alias),
        port=int(entry.get("port", 22)),
        user=entry.get("user") or _default_user(),
        key=os.path.expanduser(keys[0]) if keys else None,
        sudo=_sudo_option(spec, query),
    )


def _default_user() -> str:
    import getpass

    return getpass.getuser()
