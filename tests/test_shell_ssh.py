"""shell/ssh.py: what the SSH transport sends, checked with a real sh (no server: the
connection itself is in test_targets.py and test_known_hosts.py)."""

from __future__ import annotations

import os
import subprocess

import paramiko

from workshop.shell.ssh import fingerprint, host_pattern, printf_bytes, through_sudo


def test_printf_bytes_writes_every_byte_back():
    data = bytes(range(256)) + b"'%s\\n"
    out = subprocess.run(["sh", "-c", printf_bytes(data)], capture_output=True, check=True).stdout
    assert out == data
    assert "\n" not in printf_bytes(data)


def test_through_sudo_runs_the_command_itself_as_root_and_quotes_it():
    command = "echo \"it's $((1 + 1))\""
    result = subprocess.run(["sh", "-c", through_sudo(command)], capture_output=True, text=True)
    if os.geteuid() == 0:
        assert result.stdout == "it's 2\n"
    else:  # without root: sudo, or one sentence saying it would ask a password
        assert result.stdout == "it's 2\n" or "cannot become root through sudo" in result.stderr


def test_host_patterns_and_fingerprints_are_those_of_openssh():
    assert host_pattern("example.org", 22) == "example.org"
    assert host_pattern("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    made = paramiko.RSAKey.generate(1024)
    assert fingerprint(made).startswith("SHA256:")
    assert fingerprint(made) == fingerprint(paramiko.RSAKey(data=made.asbytes()))
