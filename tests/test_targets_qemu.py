"""qemu:NAME parsing, and how long its VM's SSH handshake is waited for (booting it is in test_vm.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from workshop.targets import TargetError, parse_target


def test_qemu_target_names_a_vm_without_booting_it():
    target = parse_target("qemu:workshop")
    assert target.kind == "qemu" and target.name == "workshop"
    assert target.host == "127.0.0.1" and target.user == "root"


@pytest.mark.parametrize("spec", ["qemu:", "qemu:../x", "qemu:a b", "qemu:images"])
def test_bad_qemu_names_are_refused(spec):
    with pytest.raises(TargetError):
        parse_target(spec)


def test_unknown_target_kinds_list_the_known_ones():
    with pytest.raises(TargetError, match="qemu:NAME"):
        parse_target("lxc:foo")


class _SlowRelay:
    """A loopback TCP relay to ``port`` that holds the server's first bytes (its
    SSH banner) for ``delay`` seconds: an emulated guest whose sshd waits for a
    CPU on a busy course server."""

    def __init__(self, port: int, delay: float) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.delay = port, delay
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.delay), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while data := src.recv(65536):
                time.sleep(delay)
                delay = 0.0
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.slow
def test_a_course_vm_that_answers_slowly_is_waited_for_where_an_ssh_host_is_given_up(sshd, tmp_path, monkeypatch):
    """The qemu target's VM is up and on this machine: its sshd answering late
    (here after 12 s, past an ssh: target's 10 s) is a starved guest, and its
    first cell still runs; the same late answer from an ssh: host is reported as
    a machine that does not answer."""
    monkeypatch.setenv("WORKSHOP_DATA_DIR", str(tmp_path / "data"))
    relay = _SlowRelay(sshd.port, delay=12)
    try:
        # the VM's host key is pinned at its boot; here, the loopback sshd's
        (tmp_path / "data").mkdir(mode=0o700)
        (tmp_path / "data" / "known_hosts").write_text(f"[127.0.0.1]:{relay.port} {sshd.host_key_pub}")
        vm = parse_target("qemu:course")
        vm.point_at({"hostname": "127.0.0.1", "port": relay.port, "user": sshd.user, "private_key": sshd.key})
        host = parse_target(f"ssh://{sshd.user}@127.0.0.1:{relay.port}?key={sshd.key}")
        answers: dict[str, object] = {}

        def first_cell(name, target):
            conn = target.open()
            try:
                _, out, _ = conn.connect().exec_command("echo up")
                answers[name] = out.read().decode().strip()
            except TargetError as exc:
                answers[name] = exc
            finally:
                conn.close()

        both = [threading.Thread(target=first_cell, args=item) for item in (("vm", vm), ("host", host))]
        for t in both:
            t.start()
        for t in both:
            t.join(90)
    finally:
        relay.close()
    assert answers["vm"] == "up", answers
    assert isinstance(answers["host"], TargetError) and "cannot reach" in str(answers["host"]), answers
