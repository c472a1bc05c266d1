"""``vagrant:NAME``: a Vagrant machine, reached through ``vagrant ssh-config NAME``.

``vagrant`` runs in the current directory (where the Vagrantfile is) unless
``VAGRANT_CWD`` says otherwise; NAME is the machine's name in the Vagrantfile
(``default`` for a single-machine one) or an id from ``vagrant global-status``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import TargetError
from ..settings import Settings
from .ssh import SSHTarget

NOT_RUNNING = ("not yet ready for ssh", "not created", "poweroff", "is not running", "saved")


USAGE = "vagrant:NAME"


@dataclass
class VagrantTarget(SSHTarget):
    quick_to_start = False
    doctor_needs = frozenset({"vagrant", "setup: Vagrant"})

    def prepare(self, progress=None) -> None:
        self.point_at(vagrant_ssh_config(self.name))

    def start_hint(self) -> str:
        return f"start it: `vagrant up {self.name}` in the Vagrantfile's directory"


TARGET = VagrantTarget


def vagrant_target(spec: str, name: str) -> VagrantTarget:
    # Vagrant boxes log in as `vagrant`, a passwordless sudoer
    return VagrantTarget(spec=spec, kind="vagrant", name=name or "default", sudo=True)


def vagrant_ssh_config(name: str, timeout: float = 120) -> dict:
    import paramiko

    exe = shutil.which("vagrant")
    if exe is None:
        raise TargetError(
            f"vagrant:{name}: the `vagrant` command is not on PATH; install Vagrant "
            "(https://developer.hashicorp.com/vagrant/install, or `apt-get install vagrant`)"
        )
    where = os.environ.get("VAGRANT_CWD") or os.getcwd()
    try:
        done = subprocess.run(
            [exe, "ssh-config", name], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise TargetError(f"vagrant:{name}: `vagrant ssh-config {name}` gave no answer within {timeout:.0f} s") from None
    said = " ".join((done.stderr + " " + done.stdout).split())
    if done.returncode != 0 or "HostName" not in done.stdout:
        low = said.lower()
        if any(word in low for word in NOT_RUNNING):
            raise TargetError(
                f"vagrant:{name}: the machine is not running; start it with `vagrant up {name}` "
                f"(in {where}). vagrant says: {said}"
            )
        if "vagrantfile" in low or "not found configured" in low:
            raise TargetError(
                f"vagrant:{name}: no machine '{name}' in a Vagrantfile at {where}; run the kernel in the "
                f"directory of the Vagrantfile or set VAGRANT_CWD. vagrant says: {said}"
            )
        raise TargetError(f"vagrant:{name}: `vagrant ssh-config {name}` failed (exit {done.returncode}): {said}")
    config = paramiko.SSHConfig.from_text(done.stdout)
    hosts = [h for h in config.get_hostnames() if h != "*"]
    entry = config.lookup(hosts[0] if hosts else name)
    keys = entry.get("identityfile") or []
    try:
        port = int(entry.get("port", 22))
    except ValueError:
        raise TargetError(f"vagrant:{name}: `vagrant ssh-config` gave a bad port: {entry.get('port')}") from None
    return {
        "hostname": entry.get("hostname", "127.0.0.1"),
        "user": entry.get("user", "vagrant"),
        "port": port,
        "private_key": os.path.expanduser(keys[0].strip('"')) if keys else None,
    }


def parse(spec: str, settings: Settings) -> VagrantTarget:
    return vagrant_target(spec, spec.partition(":")[2])
