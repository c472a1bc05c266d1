"""Targets: specs, ssh config aliases, host-key pinning, bad and lost connections."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from workshop.paths import known_hosts_file
from workshop.targets import TargetError, parse_target


def test_spec_parsing():
    t = parse_target("ssh://alice@example.org:2222?key=/k/id")
    assert (t.kind, t.user, t.host, t.port, t.key) == ("ssh", "alice", "example.org", 2222, "/k/id")
    assert parse_target("ssh://bob@host").port == 22
    assert parse_target("local").is_local
    with pytest.raises(TargetError, match="unknown target"):
        parse_target("telnet://x")
    with pytest.raises(TargetError, match="bad port"):
        parse_target("ssh://a@h:notaport")
    with pytest.raises(TargetError, match="unknown option"):
        parse_target("ssh://a@h?password=x")


def _ssh_config(tmp_path, sshd) -> Path:
    config = tmp_path / "config"
    config.write_text(
        f"Host lab\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n  IdentityFile {sshd.key}\n"
    )
    return config


def test_ssh_alias_is_read_from_ssh_config(tmp_path, monkeypatch, sshd):
    monkeypatch.setenv("WORKSHOP_SSH_CONFIG", str(_ssh_config(tmp_path, sshd)))
    t = parse_target("ssh:lab")
    assert (t.host, t.port, t.user, t.key) == ("127.0.0.1", sshd.port, sshd.user, sshd.key)
    with pytest.raises(TargetError, match="no 'Host nope' entry"):
        parse_target("ssh:nope")


def test_kernel_on_an_ssh_config_alias(start_kernel, sshd, tmp_path):
    kernel = start_kernel("ssh:lab", WORKSHOP_SSH_CONFIG=str(_ssh_config(tmp_path, sshd)))
    result = kernel.run("echo $SSH_CONNECTION | cut -d' ' -f3")
    assert result.stdout == "127.0.0.1\n"
    assert result.record["target"]["kind"] == "ssh-config"
    assert result.record["target"]["name"] == "lab"


def test_first_contact_pins_the_host_key_and_a_changed_key_is_refused(start_kernel, sshd):
    kernel = start_kernel(sshd.url)
    assert kernel.run("true").status == "ok"
    pinned = known_hosts_file().read_text()
    host_key = sshd.host_key_pub.split()[1]
    assert f"[127.0.0.1]:{sshd.port}" in pinned and host_key in pinned

    # Pretend the machine now offers another key: replace the pinned one.
    import paramiko

    other = paramiko.Ed25519Key.from_private_key_file(sshd.key)  # any other ed25519 key
    lines = [line for line in pinned.splitlines() if f"[127.0.0.1]:{sshd.port}" not in line]
    lines.append(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other.get_base64()}")
    known_hosts_file().write_text("\n".join(lines) + "\n")
    try:
        refused = start_kernel(sshd.url).run("echo should-not-run")
        assert refused.status == "error"
        assert refused.stdout == ""
        message = refused.errors[0]["evalue"]
        assert "host key" in message and "changed" in message and str(known_hosts_file()) in message
    finally:
        known_hosts_file().write_text(pinned)


def test_private_keys_are_never_shown(start_kernel, sshd):
    kernel = start_kernel(sshd.url)
    secret = Path(sshd.key).read_text().splitlines()[1]
    texts = []
    for code in ("%target", "true", "%target ssh://nobody@127.0.0.1:1?key=" + sshd.key):
        result = kernel.run(code)
        texts.append(json.dumps([m["content"] for m in result.messages], default=str))
        texts.append(json.dumps(result.reply, default=str))
    assert not any(secret in text for text in texts)


def test_unreachable_target_is_a_clear_error_and_the_kernel_goes_on(start_kernel, sshd):
    kernel = start_kernel(f"ssh://root@127.0.0.1:1?key={sshd.key}")
    result = kernel.run("echo hi")
    assert result.status == "error"
    assert "cannot reach 127.0.0.1:1" in result.errors[0]["evalue"]
    assert kernel.run("%target local\necho local-now").stdout.endswith("local-now\n")


def test_bad_target_from_the_environment_is_reported_in_the_first_cell(start_kernel):
    kernel = start_kernel("gopher://x")
    result = kernel.run("echo hi")
    assert result.status == "error"
    message = result.errors[0]["evalue"]
    assert "WORKSHOP_TARGET" in message and "unknown target" in message and "%target" in message
    assert kernel.run("%target local\necho ok").stdout.endswith("ok\n")


def test_target_magic_switches_between_local_and_ssh(start_kernel, sshd):
    kernel = start_kernel("local")
    assert kernel.run("echo ${SSH_CONNECTION:-none}").stdout == "none\n"
    switched = kernel.run(f"%target {sshd.url}\necho $SSH_CONNECTION | cut -d' ' -f4")
    assert switched.stdout.endswith(f"{sshd.port}\n")
    assert switched.record["target"]["kind"] == "ssh"
    bad = kernel.run("%target nowhere")
    assert bad.status == "error" and "unknown target 'nowhere'" in bad.errors[0]["evalue"]
    assert kernel.run("echo still-ssh; echo $SSH_CONNECTION | cut -d' ' -f4").stdout.endswith(f"{sshd.port}\n")


def test_target_qemu_says_at_once_that_the_next_cell_boots_the_vm(start_kernel, tmp_path):
    """%target starts nothing; it says what the next cell will wait for, and why it is slow without KVM."""
    from workshop.vm.machine import kvm_usable

    kernel = start_kernel("local", WORKSHOP_VM_CACHE=str(tmp_path / "no-images"))  # whatever other tests built
    started = time.monotonic()
    said = kernel.run("%target qemu:ws-never-booted")
    assert said.status == "ok" and time.monotonic() - started < 10
    lines = said.stdout.splitlines()
    assert lines[0] == "target: qemu:ws-never-booted"
    assert lines[1].startswith("the next cell boots the VM ws-never-booted first: ")
    kvm, why = kvm_usable()
    assert ("a few seconds with KVM" in lines[1]) if kvm else (f"10-30 s without KVM, as here ({why})" in lines[1])
    assert "the VM's image is built once" in lines[1]  # this test's image cache is empty
    assert kernel.run("%target local\necho ok").stdout.endswith("ok\n")  # nothing was booted on the way


def test_notebook_metadata_names_the_target(start_kernel, sshd, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["workshop"] = {"target": sshd.url}
    path = tmp_path / "lab.ipynb"
    nbformat.write(nb, str(path))
    kernel = start_kernel("local", JPY_SESSION_NAME=str(path))
    assert kernel.run("echo $SSH_CONNECTION | cut -d' ' -f4").stdout == f"{sshd.port}\n"


def test_one_connection_per_kernel_not_per_cell(start_kernel, sshd):
    kernel = start_kernel(sshd.url)
    kernel.run("true")
    before = sshd.session_pids()
    for _ in range(20):
        kernel.run("true")
    assert sshd.session_pids() == before


def test_a_dropped_connection_is_reported_and_the_next_cell_reconnects(start_kernel, sshd):
    kernel = start_kernel(sshd.url)
    kernel.run("export STATE=old")
    mine = set(sshd.session_pids())

    def drop():
        time.sleep(0.7)
        for pid in mine:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    import threading

    threading.Thread(target=drop).start()
    started = time.monotonic()
    result = kernel.run("echo working; sleep 5; echo never")
    assert time.monotonic() - started < 4
    assert result.status == "error"
    assert "working" in result.stdout and "never" not in result.stdout
    assert "connection" in result.errors[0]["evalue"] and "lost" in result.errors[0]["evalue"]
    assert "next cell starts a new shell" in result.stderr
    again = kernel.run("echo ${STATE:-fresh}")
    assert again.status == "ok"
    assert again.stdout == "fresh\n"
    assert "started a new shell" not in again.stderr  # the cell above said so: once is enough


def test_a_killed_sshd_listener_costs_nothing_until_the_connection_goes_then_it_is_said_and_found_again(
        start_kernel):
    """The listener killed under a live kernel: its connection (a process of its own)
    goes on; once that connection drops too, the next cell says the target cannot be
    reached, in one sentence and at once; once sshd is back, the next cell reconnects."""
    from sshd import start_sshd

    server = start_sshd()
    try:
        kernel = start_kernel(server.url)
        assert kernel.run("export STATE=kept; echo up").stdout == "up\n"
        sessions = server.session_pids()  # (found below the listener, while it lives)
        assert sessions
        server.kill_listener()
        assert kernel.run("echo ${STATE}").stdout == "kept\n"  # the connection outlives its listener
        for pid in sessions:
            os.kill(pid, 9)
        started = time.monotonic()
        down = kernel.run("echo never", timeout=60)
        assert down.status == "error" and "never" not in down.stdout
        said = down.errors[0]["evalue"]
        assert f"127.0.0.1:{server.port}" in said and "\n" not in said.strip(), said
        assert time.monotonic() - started < 30
        server.start_listener()
        back = kernel.run("echo ${STATE:-fresh}", timeout=60)
        assert back.status == "ok" and back.stdout == "fresh\n", (back.stdout, back.stderr)
    finally:
        server.stop()


def test_posix_sh_when_the_target_has_no_bash(start_kernel, tmp_path):
    """A busybox-only PATH: the kernel falls back to sh and keeps its contract."""
    import shutil

    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is missing: apt-get install busybox-static")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in ("sh", "echo", "cat", "sleep", "pwd", "ls", "mkfifo", "rm", "mkdir", "chmod", "grep", "kill", "pgrep", "printf", "head", "tr"):
        (bindir / applet).symlink_to(busybox)
    kernel = start_kernel("local", PATH=str(bindir))
    first = kernel.run('cd /tmp; X=42; f() { echo "f:$X"; }; echo "$BASH_VERSION|"')
    assert first.stdout == "|\n", "no bash on this PATH"
    assert kernel.run("pwd; f").stdout == "/tmp\nf:42\n"
    failing = kernel.run("echo 'unbalanced")
    assert failing.status == "error"
    assert kernel.run("echo ok").stdout == "ok\n"
    import threading

    threading.Timer(0.5, kernel.interrupt).start()
    interrupted = kernel.run("sleep 20; echo never")
    assert interrupted.exit_status == 130 and "never" not in interrupted.stdout
    assert kernel.run("echo $X").stdout == "42\n"


def test_the_callers_settings_reach_the_ssh_alias_lookup(tmp_path, monkeypatch):
    """A config value of the kernel's (not only the environment) decides which SSH config is read."""
    from workshop.settings import Settings
    from workshop.targets import parse_target

    config = tmp_path / "ssh_config"
    config.write_text("Host lab\n  HostName 10.0.0.7\n  User student\n  Port 2222\n")
    monkeypatch.delenv("WORKSHOP_SSH_CONFIG", raising=False)
    settings = Settings()
    settings.ssh_config = str(config)
    target = parse_target("ssh:lab", settings)
    assert (target.host, target.port, target.user) == ("10.0.0.7", 2222, "student")
    assert target.settings is settings
