"""shell/known_hosts.py: host-key pins in a file of their own, replaced atomically."""

from __future__ import annotations

import paramiko
import pytest

from workshop.shell.known_hosts import pin, unpin


def test_a_pin_is_kept_a_changed_key_is_refused_and_replace_takes_it(tmp_path):
    path = tmp_path / "known_hosts"
    first, second = paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
    pin("[127.0.0.1]:2222", first, path)
    pin("[127.0.0.1]:2222", first, path)  # the same key again: nothing changes
    assert paramiko.HostKeys(str(path)).lookup("[127.0.0.1]:2222")["ssh-rsa"] == first
    with pytest.raises(paramiko.BadHostKeyException):
        pin("[127.0.0.1]:2222", second, path)
    pin("[127.0.0.1]:2222", second, path, replace=True)  # a rebuilt VM
    assert paramiko.HostKeys(str(path)).lookup("[127.0.0.1]:2222")["ssh-rsa"] == second
    unpin("[127.0.0.1]:2222", path)
    assert paramiko.HostKeys(str(path)).lookup("[127.0.0.1]:2222") is None
    unpin("nowhere", tmp_path / "absent")  # no file: nothing to do
