"""`workshop doctor`: the preflight table, its fixes and its exit status."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

ITEMS = ("CPU virtualization flags", "KVM (/dev/kvm)", "no recent KVM failure", "qemu", "bakerx", "VBoxManage", "vagrant",
         "reachable", "root or sudo on the target", "cgroup version", "overlayfs", "unshare", "busybox")


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workshop", "doctor", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "240", **env},
    )


def test_doctor_lists_every_item_and_its_exit_status_follows_the_required_ones():
    done = doctor("--target", "local")
    for item in ITEMS:
        assert item in done.stdout, item
    required_failures = [line for line in done.stdout.splitlines() if "✘" in line and "(optional)" not in line]
    assert done.returncode == (1 if required_failures else 0), done.stdout


def test_doctor_on_this_machine_as_root_finds_root_and_cgroups():
    done = doctor("--target", "local")
    row = next(line for line in done.stdout.splitlines() if "root or sudo" in line)
    if os.geteuid() == 0:
        assert "✔" in row and "root" in row
    cgroup = next(line for line in done.stdout.splitlines() if "cgroup version" in line)
    assert "v2" in cgroup or "v1" in cgroup


def test_doctor_over_ssh_checks_the_target(sshd):
    done = doctor("--target", sshd.url)
    reach = next(line for line in done.stdout.splitlines() if "target reachable" in line)
    assert "✔" in reach and f"127.0.0.1:{sshd.port}" in done.stdout


def test_an_unreachable_target_fails_with_a_fix():
    done = doctor("--target", "ssh://nobody@127.0.0.1:1?key=/nonexistent")
    assert done.returncode == 1
    reach = next(line for line in done.stdout.splitlines() if "reachable" in line)
    assert "✘" in reach
    assert "required check(s) failed" in done.stdout


def test_a_stopped_qemu_vm_fails_with_the_command_to_start_it():
    done = doctor("--target", "qemu:not-started")
    assert done.returncode == 1
    assert "workshop vm up not-started" in done.stdout
    # qemu is required for a qemu target
    qemu = next(line for line in done.stdout.splitlines() if line.split("│")[2:3] and "qemu " in line.split("│")[2])
    assert "(optional)" not in qemu


def test_a_bad_target_spec_fails():
    done = doctor("--target", "nonsense:thing")
    assert done.returncode == 1
    assert "unknown target" in done.stdout


@pytest.mark.slow
def test_doctor_names_a_recent_kvm_failure_and_forgets_it_after_a_day(tmp_path):
    marker = tmp_path / "vms" / "kvm-broken"
    marker.parent.mkdir()
    marker.write_text("KVM internal error (qemu state internal-error)\n")
    failed = time.time() - 3 * 3600
    os.utime(marker, (failed, failed))
    done = doctor("--target", "local", WORKSHOP_DATA_DIR=str(tmp_path), COLUMNS="400")
    row = " ".join(next(line for line in done.stdout.splitlines() if "no recent KVM failure" in line).split())
    retry = time.strftime("%Y-%m-%d %H:%M", time.localtime(failed + 24 * 3600))
    assert "✘" in row and "(optional)" in row
    assert f"a KVM guest failed here 3 h ago: KVM internal error (qemu state internal-error); KVM is tried again " \
           f"after {retry}, or at once if you remove {marker}" in row
    assert "VMs boot under TCG software emulation (slower) until then" in row
    long_ago = time.time() - 25 * 3600
    os.utime(marker, (long_ago, long_ago))
    done = doctor("--target", "local", WORKSHOP_DATA_DIR=str(tmp_path), COLUMNS="400")
    row = " ".join(next(line for line in done.stdout.splitlines() if "no recent KVM failure" in line).split())
    assert "✔" in row and "none remembered: VMs use KVM when /dev/kvm works" in row
    assert not marker.exists()


def test_the_go_row_names_the_package_and_the_setup_option_when_go_is_missing(tmp_path):
    """Notebook 9 needs Go on this machine: its part's row says what installs it, and is fine once it is there."""
    bin_dir = tmp_path / "bin"  # this machine's commands without go
    bin_dir.mkdir()
    for entry in os.scandir("/usr/bin"):
        if entry.name not in ("go", "gofmt"):
            (bin_dir / entry.name).symlink_to(entry.path)
    without = doctor("--target", "local", PATH=f"{bin_dir}:/usr/sbin:/sbin")
    row = next(line for line in without.stdout.splitlines() if "setup: Go (notebook 9)" in line)
    assert "✘" in row and "missing golang-go" in row and "bash scripts/setup --go" in row, row
    assert "(optional)" in row  # the local target runs the other notebooks without it
    from workshop.doctor import part_checks

    [here] = [c for c in part_checks("local") if c.name == "setup: Go (notebook 9)"]
    assert here.ok == bool(shutil.which("go")), here


def test_a_docker_engine_that_does_not_answer_is_an_optional_row_with_its_fix():
    done = doctor("--target", "local", DOCKER_HOST="unix:///nonexistent/docker.sock", COLUMNS="400")
    row = " ".join(next(line for line in done.stdout.splitlines() if "Docker engine" in line).split())
    assert "✘" in row and "(optional)" in row, row
    assert "does not answer at unix:///nonexistent/docker.sock" in row and "`workshop docker up` (as root)" in row
    setup = " ".join(next(line for line in done.stdout.splitlines() if "setup: Docker" in line).split())
    assert "✔" in setup or "bash scripts/setup --docker" in setup, setup
