"""Targets that log in as an ordinary user and run cells as root through sudo,
as on a Vagrant box (user `vagrant`, passwordless sudo): real accounts on this
machine, logged in over the loopback sshd."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from workshop.targets import TargetError, parse_target
from workshop.targets.vagrant import vagrant_target

pytestmark = pytest.mark.slow

SUDOER, PLAIN = "ws-sudoer", "ws-plain"


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def accounts(sshd):
    """A passwordless sudoer and a user without sudo rights, removed afterwards."""
    if shutil.which("sudo") is None:
        pytest.fail("sudo is missing: apt-get install sudo")
    made = []
    for name in (SUDOER, PLAIN):
        if not _exists(name):
            # "*": no password, yet not locked (sshd refuses locked accounts)
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", name], check=True)
            made.append(name)
        sshd.authorize(name)
    rule = Path("/etc/sudoers.d") / SUDOER
    rule.write_text(f"{SUDOER} ALL=(ALL) NOPASSWD: ALL\n")
    rule.chmod(0o440)
    yield sshd
    rule.unlink(missing_ok=True)
    for name in made:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "--remove", "--force", name], check=False, capture_output=True)


def test_a_sudo_target_runs_cells_as_root_and_can_still_interrupt(accounts, start_kernel):
    kernel = start_kernel(accounts.url_for(SUDOER, sudo="1"))
    who = kernel.run("id -un; echo $SUDO_USER")
    assert who.stdout == f"root\n{SUDOER}\n"
    assert who.record["target"]["user"] == SUDOER and who.record["target"]["sudo"] is True
    # a namespace needs root: the magic works as it does for a root login
    inner = kernel.run("%%unshare --uts --hostname sudo-box\nhostname")
    assert inner.stdout == "sudo-box\n"
    # interrupts are sent beside the shell, so they must run as root too
    timer = threading.Timer(0.5, kernel.interrupt)
    timer.start()
    stopped = kernel.run("export KEPT=yes; sleep 30; echo never")
    timer.join()
    assert stopped.record["interrupted"] is True and "never" not in stopped.stdout
    assert kernel.run("echo $KEPT").stdout == "yes\n"


def test_without_sudo_cells_run_as_the_login_user(accounts, start_kernel):
    kernel = start_kernel(accounts.url_for(SUDOER))
    assert kernel.run("id -un").stdout == f"{SUDOER}\n"


def test_a_user_who_cannot_sudo_gets_one_clear_sentence(accounts, start_kernel):
    kernel = start_kernel(accounts.url_for(PLAIN, sudo="1"))
    result = kernel.run("id -un")
    assert result.status == "error"
    assert f"{PLAIN} cannot become root through sudo without a password" in result.errors[0]["evalue"]
    assert kernel.run("%target local\nid -un").stdout.endswith("root\n")


def test_sudo_is_an_option_of_ssh_targets_and_on_for_vagrant():
    assert parse_target("ssh://u@h:2222?key=/k&sudo=1").sudo is True
    assert parse_target("ssh://u@h:2222?key=/k").sudo is False
    assert vagrant_target("vagrant:default", "default").sudo is True
    with pytest.raises(TargetError, match="sudo=maybe is not a choice"):
        parse_target("ssh://u@h?sudo=maybe")


NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_workshop_notebooks_pass_as_a_sudoer(accounts, path, tmp_path, installed_kernelspec):
    """What a Vagrant box gives: a login as a sudoer; the notebooks run unchanged."""
    from test_notebooks import cgroup_dirs, mounts

    from workshop.runner import run_notebook

    before = mounts(), cgroup_dirs()
    result = run_notebook(path, out_dir=tmp_path, target=accounts.url_for(SUDOER, sudo="1"), timeout=120)
    failed = [f"{c.key}: {c.message} (got {c.got[-800:]!r})" for c in result.failed_checks]
    assert result.error is None and not failed, f"{result.error}; failed checks: {failed}"
    assert result.checks, "the notebook has checks"
    assert (mounts(), cgroup_dirs()) == before, "the notebook left mounts or cgroups behind"
