"""Host-key pins are never lost, however many kernels pin at once (attack: a
class starting together, or a batch of reruns, racing on one known-hosts file)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import paramiko
import pytest
from harness import KernelHarness, clean_env
from sshd import start_sshd

from workshop.shell import known_hosts


def test_concurrent_pins_from_threads_all_land(tmp_path):
    path = tmp_path / "known_hosts"
    keys = [paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate")
            else paramiko.RSAKey.generate(1024) for _ in range(24)]
    start = threading.Barrier(len(keys))

    def pin(i: int) -> None:
        start.wait()
        known_hosts.pin(f"[127.0.0.1]:{20000 + i}", keys[i], path)

    with ThreadPoolExecutor(len(keys)) as pool:
        list(pool.map(pin, range(len(keys))))
    pinned = paramiko.HostKeys(str(path))
    assert len(pinned.keys()) == len(keys)
    for i, key in enumerate(keys):
        assert pinned.lookup(f"[127.0.0.1]:{20000 + i}")[key.get_name()] == key


def test_a_different_key_pinned_meanwhile_is_refused(tmp_path):
    path = tmp_path / "known_hosts"
    first, second = paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
    known_hosts.pin("[127.0.0.1]:2222", first, path)
    known_hosts.pin("[127.0.0.1]:2222", first, path)  # the same key again is fine
    with pytest.raises(paramiko.BadHostKeyException):
        known_hosts.pin("[127.0.0.1]:2222", second, path)
    assert paramiko.HostKeys(str(path)).lookup("[127.0.0.1]:2222")["ssh-rsa"] == first


@pytest.mark.slow
def test_kernels_started_together_against_fresh_hosts_pin_every_host(installed_kernelspec, tmp_path):
    servers = [start_sshd() for _ in range(8)]
    data = tmp_path / "data"
    env = clean_env(WORKSHOP_DATA_DIR=str(data))
    kernels: list[KernelHarness] = []
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            kernels = list(pool.map(lambda s: KernelHarness(dict(env, WORKSHOP_TARGET=s.url)), servers))
            results = list(pool.map(lambda k: k.run("echo pinned", timeout=60), kernels))
        assert all(r.stdout == "pinned\n" for r in results), [r.stderr for r in results]
        pinned = paramiko.HostKeys(str(data / "known_hosts"))
        assert sorted(pinned.keys()) == sorted(f"[127.0.0.1]:{s.port}" for s in servers)
    finally:
        for kernel in kernels:
            kernel.shutdown()
        for server in servers:
            server.stop()
