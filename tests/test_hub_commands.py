"""`workshop hub` without a hub: what a user who has not set one up is told
(tests/test_hub.py runs a real one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _workshop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True, timeout=120)


def test_status_of_a_directory_without_a_hub_says_so_and_exits_1(tmp_path):
    result = _workshop("hub", "status", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.strip() == f"no hub is running from {tmp_path}"


def test_up_without_install_says_how_to_install_in_one_sentence(tmp_path):
    result = _workshop("hub", "up", "--dir", str(tmp_path))
    assert result.returncode == 1
    message = result.stderr.strip().removeprefix("Error: ")
    assert ("only root can start the hub" in message or
            message == f"{tmp_path} has no hub: run `workshop hub install --dir {tmp_path}` "
                       "(or bash scripts/setup --hub) first.")
    assert "Traceback" not in result.stderr


def test_down_when_none_runs_is_not_an_error(tmp_path):
    result = _workshop("hub", "down", "--dir", str(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == "no hub was running"


def test_setup_lists_the_hub_part_and_its_extra():
    listing = subprocess.run(["bash", str(ROOT / "scripts" / "setup"), "--list"], capture_output=True, text=True,
                             check=True).stdout
    assert "hub      nodejs libpam-runtime" in listing
    assert "--hub adds the [hub] extra" in listing
    assert "jupyterhub" in (ROOT / "setup.cfg").read_text().split("hub =", 1)[1].split("\n\n")[0]


def _students_environment(hub_dir: Path, vm: dict | None, **more) -> tuple[dict, list]:
    """What configure() gives each student's server, for a hub.json with this "vm" (and ``more``)."""
    from traitlets.config import Config

    from workshop.hub.config import configure

    settings = {"ip": "127.0.0.1", "port": 8000, "group": "students", "admins": [], **more}
    (hub_dir / "hub.json").write_text(json.dumps(settings | ({"vm": vm} if vm is not None else {})))
    (hub_dir / "service-token").write_text("x\n")
    c = Config()
    configure(c, hub_dir)
    return c.Spawner.environment, c.Spawner.args


def test_students_cells_run_on_vms_of_their_own_once_the_hub_vm_is_built(tmp_path):
    env, _ = _students_environment(tmp_path, None)
    assert "WORKSHOP_TARGET" not in env
    env, _ = _students_environment(tmp_path, {"enabled": True, "memory_mb": 768, "at_once": 6, "idle_minutes": 20})
    assert {name: env[name] for name in env if name.startswith("WORKSHOP_")} == {
        "WORKSHOP_TARGET": "qemu:course", "WORKSHOP_VM_RESTORE": "1", "WORKSHOP_VM_CACHE": str(tmp_path / "vm"),
        "WORKSHOP_VM_MEMORY": "768", "WORKSHOP_VM_MAX_PER_USER": "1", "WORKSHOP_VM_MAX_RUNNING": "6",
        "WORKSHOP_VM_IDLE_MINUTES": "20"}


def test_the_hubs_exchange_is_where_students_kernels_hand_in(tmp_path):
    """(Fetching from it as each server starts runs for real in tests/test_hub_course.py.)"""
    env, _ = _students_environment(tmp_path, None)
    assert "WORKSHOP_COURSE_DIR" not in env, "the default course directory, /srv/workshop-course"
    env, _ = _students_environment(tmp_path, None, exchange="/srv/cs101")
    assert env["WORKSHOP_COURSE_DIR"] == "/srv/cs101"


def test_hub_vm_without_a_hub_says_so(tmp_path):
    result = _workshop("hub", "vm", "--dir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = result.stderr.strip().removeprefix("Error: ")
    assert message in ("only root can build the students' VM (students may read its cache, never change it): use sudo.",
                       f"{tmp_path} has no hub: run `workshop hub install --dir {tmp_path}` first.")


def test_install_again_with_a_port_or_group_changes_only_those_in_hub_json(tmp_path):
    """What the README says changes where the hub listens, after setup made the hub."""
    from workshop.hub.config import proxy_command
    from workshop.hub.server import others_can_run

    if os.geteuid() != 0 or not others_can_run(sys.executable):
        pytest.skip("installing a hub needs root and a Python students can run")
    proxy = proxy_command(tmp_path)  # as a first install left it (no npm here)
    proxy.parent.mkdir(parents=True)
    proxy.touch()
    first = _workshop("hub", "install", "--dir", str(tmp_path), "--group", "users")  # groups Debian has
    assert first.returncode == 0, first.stderr
    settings = json.loads((tmp_path / "hub.json").read_text())
    assert settings == {"ip": "127.0.0.1", "port": 8000, "group": "users", "admins": []}
    (tmp_path / "hub.json").write_text(json.dumps(settings | {"vm": {"enabled": True}}))
    again = _workshop("hub", "install", "--dir", str(tmp_path), "--port", "18123", "--group", "staff")
    assert again.returncode == 0, again.stderr
    assert f"{tmp_path}/hub.json: 127.0.0.1:18123, the users of group staff" in again.stdout
    assert "the group" not in again.stdout, "an existing group is used as it is"
    assert json.loads((tmp_path / "hub.json").read_text()) == {
        "ip": "127.0.0.1", "port": 18123, "group": "staff", "admins": [], "vm": {"enabled": True}}
    same = _workshop("hub", "install", "--dir", str(tmp_path), "--port", "18123")
    assert same.returncode == 0 and "hub.json" not in same.stdout, same.stdout
