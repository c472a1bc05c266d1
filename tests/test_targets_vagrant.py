"""vagrant:NAME resolves through `vagrant ssh-config NAME`.

VirtualBox cannot run here, so these tests put a small fake `vagrant` on PATH
that prints what `vagrant ssh-config` prints for a running machine (Host,
HostName, User, Port, IdentityFile...), and for a machine that is not running
the message and exit status 1 that Vagrant gives.  The fake points at the
loopback sshd, so a kernel really runs cells through the resolved target.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from workshop.targets import TargetError, parse_target

FAKE_VAGRANT = """#!/bin/sh
# fake vagrant: ssh-config [NAME]
[ "$1" = ssh-config ] || { echo "fake vagrant: only ssh-config" >&2; exit 2; }
name=${2:-default}
case "$FAKE_VAGRANT_STATE" in
running)
    cat <<CONFIG
Host $name
  HostName 127.0.0.1
  User $FAKE_VAGRANT_USER
  Port $FAKE_VAGRANT_PORT
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "$FAKE_VAGRANT_KEY"
  IdentitiesOnly yes
  LogLevel FATAL

CONFIG
    ;;
poweroff)
    cat >&2 <<MSG
The provider for this Vagrant-managed machine is reporting that it
is not yet ready for SSH. Depending on your provider this can carry
different meanings. Make sure your machine is created and running and
try again. Additionally, check the output of \\`vagrant status\\` to verify
that the machine is in the state that you expect. If you continue to
get this error message, please view the documentation for the provider
you're using.
MSG
    exit 1 ;;
*)
    echo "The machine with the name '$name' was not found configured for" >&2
    echo "this Vagrant environment." >&2
    exit 1 ;;
esac
"""


@pytest.fixture
def fake_vagrant(tmp_path: Path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "vagrant"
    exe.write_text(FAKE_VAGRANT)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return monkeypatch


def test_vagrant_target_resolves_from_ssh_config(fake_vagrant, tmp_path):
    key = tmp_path / "private key"
    fake_vagrant.setenv("FAKE_VAGRANT_STATE", "running")
    fake_vagrant.setenv("FAKE_VAGRANT_USER", "vagrant")
    fake_vagrant.setenv("FAKE_VAGRANT_PORT", "2222")
    fake_vagrant.setenv("FAKE_VAGRANT_KEY", str(key))
    target = parse_target("vagrant:default")
    assert target.kind == "vagrant" and target.name == "default"
    target.prepare()
    assert (target.user, target.host, target.port, target.key) == ("vagrant", "127.0.0.1", 2222, str(key))


def test_vagrant_without_a_name_is_the_default_machine():
    assert parse_target("vagrant:").name == "default"


def test_a_stopped_machine_is_a_clear_error(fake_vagrant):
    fake_vagrant.setenv("FAKE_VAGRANT_STATE", "poweroff")
    with pytest.raises(TargetError) as err:
        parse_target("vagrant:web").prepare()
    assert "not running" in str(err.value)
    assert "vagrant up web" in str(err.value)


def test_an_unknown_machine_is_a_clear_error(fake_vagrant):
    fake_vagrant.setenv("FAKE_VAGRANT_STATE", "none")
    with pytest.raises(TargetError, match="VAGRANT_CWD"):
        parse_target("vagrant:nosuch").prepare()


def test_missing_vagrant_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetError, match="install Vagrant"):
        parse_target("vagrant:default").prepare()


def test_a_kernel_runs_cells_on_a_vagrant_target(fake_vagrant, sshd, start_kernel):
    fake_vagrant.setenv("FAKE_VAGRANT_STATE", "running")
    fake_vagrant.setenv("FAKE_VAGRANT_USER", sshd.user)
    fake_vagrant.setenv("FAKE_VAGRANT_PORT", str(sshd.port))
    fake_vagrant.setenv("FAKE_VAGRANT_KEY", sshd.key)
    kernel = start_kernel("vagrant:default")
    result = kernel.run("export V=1; echo via-vagrant")
    assert result.status == "ok", result.stderr
    assert result.stdout == "via-vagrant\n"
    assert result.record["target"]["kind"] == "vagrant"
    assert kernel.run("echo $V").stdout == "1\n"


REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_PACKAGES = ("busybox-static", "cgroup-tools", "runc", "skopeo", "build-essential", "golang-go", "util-linux",
                     "iproute2", "procps", "psmisc")


def test_the_vagrantfile_provisions_what_the_notebooks_need():
    text = (REPO / "Vagrantfile").read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    assert 'provider "virtualbox"' in text
    for package in NOTEBOOK_PACKAGES:
        assert package in text


@pytest.mark.slow
def test_vagrant_validate_passes(tmp_path):
    """Real `vagrant validate` (Debian's vagrant package). VirtualBox is not
    installed here, so the provider's own options are left out of the check
    (--ignore-provider); without it vagrant stops at "No usable default provider"."""
    import shutil
    import subprocess

    exe = shutil.which("vagrant")
    if exe is None:
        pytest.skip("vagrant is not installed (apt-get install vagrant)")
    env = dict(os.environ, VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"), VAGRANT_HOME=str(tmp_path / "home"),
               VAGRANT_CHECKPOINT_DISABLE="1")
    done = subprocess.run([exe, "validate", "--ignore-provider"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout
