"""``bakerx:NAME``: a bakerx VM, reached through ``bakerx ssh-info NAME --format json``.

bakerx prints ``{"user", "port", "host", "hostname", "private_key"}``; for a VM
it does not know it prints "Could not locate VM" and still exits 0.  The
lookup runs each time a shell starts, so a VM that was restarted on another
port is found again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import TargetError
from ..settings import Settings
from .ssh import SSHTarget

INSTALL_HINT = "install it with `npm install -g ottomatica/bakerx` (it needs VirtualBox or hyperkit)"


USAGE = "bakerx:NAME"


@dataclass
class BakerxTarget(SSHTarget):
    quick_to_start = False
    doctor_needs = frozenset({"bakerx"})

    def prepare(self, progress=None) -> None:
        self.point_at(bakerx_ssh_info(self.name))

    def start_hint(self) -> str:
        return f"start it: `bakerx run {self.name} IMAGE` (`bakerx ps` lists the VMs)"


TARGET = BakerxTarget


def bakerx_target(spec: str, name: str) -> BakerxTarget:
    if not name:
        raise TargetError("'bakerx:' needs a VM name, e.g. bakerx:alpine-vm (see `bakerx ps`)")
    # alpine images log in as root, Vagrant-style boxes as a passwordless sudoer
    return BakerxTarget(spec=spec, kind="bakerx", name=name, sudo=True)


def bakerx_ssh_info(name: str, timeout: float = 60) -> dict:
    """Ask bakerx where VM ``name`` listens; raise TargetError with the fix."""
    exe = shutil.which("bakerx")
    if exe is None:
        raise TargetError(f"bakerx:{name}: the `bakerx` command is not on PATH; {INSTALL_HINT}")
    cmd = [exe, "ssh-info", name, "--format", "json"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TargetError(f"bakerx:{name}: `bakerx ssh-info {name}` gave no answer within {timeout:.0f} s") from None
    out = done.stdout.strip()
    said = (out + "\n" + done.stderr.strip()).strip()
    if "could not locate vm" in said.lower():
        raise TargetError(
            f"bakerx:{name}: bakerx has no VM named '{name}' (`bakerx ssh-info {name}` says "
            f"\"Could not locate VM\"); create it with `bakerx run {name} IMAGE` "
            f"(`bakerx images` lists images, `bakerx ps` the VMs)"
        )
    if done.returncode != 0:
        raise TargetError(f"bakerx:{name}: `bakerx ssh-info {name}` failed (exit {done.returncode}): {said}")
    try:
        start = out.index("{")
        info = json.loads(out[start : out.rindex("}") + 1])
    except ValueError:
        raise TargetError(f"bakerx:{name}: `bakerx ssh-info {name} --format json` printed no JSON: {said}") from None
    missing = [f for f in ("user", "port", "private_key") if not info.get(f)]
    if missing or not (info.get("hostname") or info.get("host")):
        raise TargetError(
            f"bakerx:{name}: `bakerx ssh-info` lacks {', '.join(missing) or 'hostname'}: {out}"
        )
    try:
        port = int(info["port"])
    except (TypeError, ValueError):
        raise TargetError(f"bakerx:{name}: `bakerx ssh-info` gave a bad port {info['port']!r}") from None
    key = os.path.expanduser(str(info["private_key"]))
    if not os.path.exists(key):
        raise TargetError(f"bakerx:{name}: the key {key} that bakerx names does not exist")
    return {
        "user": str(info["user"]),
        "hostname": str(info.get("hostname") or info.get("host")),
        "port": port,
        "private_key": key,
    }


def parse(spec: str, settings: Settings) -> BakerxTarget:
    return bakerx_target(spec, spec.partition(":")[2])
