"""bakerx:NAME resolves through `bakerx ssh-info NAME --format json`.

bakerx needs VirtualBox (or hyperkit), which cannot run here, so these tests
put a small fake `bakerx` on PATH that prints what bakerx documents: the JSON
fields user, port, host, hostname, private_key for a known VM, and
"Could not locate VM" with exit status 0 for an unknown one.  The fake points
at the loopback sshd, so a kernel really runs cells through the resolved target.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from workshop.targets import TargetError, parse_target

FAKE_BAKERX = """#!/bin/sh
# fake bakerx: ssh-info NAME --format json
[ "$1" = ssh-info ] || { echo "fake bakerx: only ssh-info" >&2; exit 2; }
entry=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d[sys.argv[2]]) if sys.argv[2] in d else "")' "$FAKE_BAKERX_VMS" "$2")
if [ -z "$entry" ]; then
    echo "Could not locate VM $2"
    exit 0
fi
if [ "$3 $4" = "--format json" ]; then echo "$entry"; else echo "ssh -i key -p port user@host"; fi
"""


def _install_fake(tmp_path: Path, monkeypatch, vms: dict) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "bakerx"
    exe.write_text(FAKE_BAKERX)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (tmp_path / "vms.json").write_text(json.dumps(vms))
    monkeypatch.setenv("FAKE_BAKERX_VMS", str(tmp_path / "vms.json"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_bakerx_target_resolves_from_ssh_info(tmp_path, monkeypatch):
    key = tmp_path / "baker_rsa"
    key.write_text("not a real key")
    _install_fake(tmp_path, monkeypatch, {
        "alpine-vm": {"user": "root", "port": 2003, "host": "127.0.0.1", "hostname": "127.0.0.1",
                      "private_key": str(key)},
    })
    target = parse_target("bakerx:alpine-vm")
    assert target.kind == "bakerx" and target.name == "alpine-vm"
    target.prepare()
    assert (target.user, target.host, target.port, target.key) == ("root", "127.0.0.1", 2003, str(key))


def test_could_not_locate_vm_with_exit_0_is_a_clear_error(tmp_path, monkeypatch):
    _install_fake(tmp_path, monkeypatch, {})
    target = parse_target("bakerx:missing")
    with pytest.raises(TargetError) as err:
        target.prepare()
    message = str(err.value)
    assert "Could not locate VM" in message
    assert "bakerx run missing" in message


def test_missing_bakerx_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetError, match="npm install -g ottomatica/bakerx"):
        parse_target("bakerx:x").prepare()


def test_bakerx_without_a_name_is_refused():
    with pytest.raises(TargetError, match="needs a VM name"):
        parse_target("bakerx:")


def test_a_kernel_runs_cells_on_a_bakerx_target(tmp_path, monkeypatch, sshd, start_kernel):
    _install_fake(tmp_path, monkeypatch, {
        "vm1": {"user": sshd.user, "port": sshd.port, "host": "127.0.0.1", "hostname": "127.0.0.1",
                "private_key": sshd.key},
    })
    kernel = start_kernel("bakerx:vm1")
    result = kernel.run("cd /tmp; echo via-bakerx")
    assert result.status == "ok", result.stderr
    assert result.stdout == "via-bakerx\n"
    assert result.record["target"]["kind"] == "bakerx"
    assert result.record["target"]["port"] == sshd.port
    assert kernel.run("pwd").stdout == "/tmp\n"


def test_a_kernel_reports_a_missing_bakerx_vm_in_the_cell(tmp_path, monkeypatch, start_kernel):
    _install_fake(tmp_path, monkeypatch, {})
    kernel = start_kernel("bakerx:nope")
    result = kernel.run("echo hi")
    assert result.status == "error"
    assert "Could not locate VM" in result.errors[0]["evalue"]
    assert "bakerx run nope" in result.errors[0]["evalue"]
