"""`workshop docker up|down|image`: the lab's Docker engine found or started, and stopped
only by whoever started it; notebook 07's cells on that engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workshop.engine import PID_FILE, server_version

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def workshop(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_up_starts_an_engine_only_when_none_answers_and_down_stops_only_that_one():
    answered, ours = server_version() is not None, PID_FILE.exists()
    up = workshop("docker", "up")
    assert up.returncode == 0, up.stderr
    assert server_version() is not None
    if answered:
        assert up.stdout.startswith("the engine answers (Docker "), up.stdout
        if not ours:  # systemd's, or someone else's: left running
            assert "was not started by workshop; it is left running" in workshop("docker", "down").stdout
            assert server_version() is not None
        return
    assert up.stdout.startswith("started "), up.stdout
    assert workshop("docker", "up").stdout.startswith("the engine answers")
    down = workshop("docker", "down")
    assert down.stdout.startswith("stopped dockerd (pid "), down.stdout
    assert server_version() is None and not PID_FILE.exists()
    assert workshop("docker", "down").stdout.strip() == "no engine runs"


def test_an_image_needs_a_root_filesystem_and_an_engine(tmp_path):
    refused = workshop("docker", "image", str(tmp_path), "course")
    assert refused.returncode == 1
    assert f"{tmp_path} is not a root filesystem (no bin/ in it); make one with `%rootfs {tmp_path}`" in refused.stderr
    (tmp_path / "bin").mkdir()
    silent = workshop("docker", "image", str(tmp_path), "course", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert silent.returncode == 1
    assert "the Docker engine does not answer at unix:///nonexistent/docker.sock; `workshop docker up` (as root) " \
           "starts it" in silent.stderr


def test_notebook_07_runs_its_docker_cells_for_real_when_an_engine_answers(tmp_path):
    """Its engine cells (import, run, commit, build) and its four image stores (skopeo between the
    engine, an OCI layout, a directory and a registry on loopback) check real state; without an
    engine they only say why they skipped. The engine is started here when none answers."""
    started = server_version() is None
    if started:
        assert workshop("docker", "up").returncode == 0
    try:
        done = workshop("run", str(NOTEBOOKS / "07-docker-by-hand.ipynb"), "--out", str(tmp_path))
    finally:
        if started:
            workshop("docker", "down")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    cells = {c.get("id"): c for c in json.loads((tmp_path / "07-docker-by-hand.ipynb").read_text())["cells"]}
    said = {cid: "".join("".join(o.get("text", "")) for o in cells[cid]["outputs"]) for cid in ("nb07-docker", "nb07-stores")}
    assert "built by docker" in said["nb07-docker"] and "skipped" not in said["nb07-docker"], said
    assert "pulled back into the engine: sha256:" in said["nb07-stores"], said
    assert subprocess.run(["docker", "images", "-q", "workshop-busybox"], capture_output=True, text=True).stdout == ""
