"""Fixtures: the installed kernelspec, a real sshd on loopback, kernels per target."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import KernelHarness, clean_env  # noqa: E402
from sshd import find_sshd, start_sshd  # noqa: E402

_STATE = Path(tempfile.mkdtemp(prefix="workshop-tests-"))
# The tool's own state (known hosts, VM images) stays out of the user's home.
os.environ["WORKSHOP_DATA_DIR"] = str(_STATE / "data")


@pytest.fixture(scope="session", autouse=True)
def installed_kernelspec():
    """Install the kernelspec with the real CLI into a private prefix."""
    prefix = _STATE / "prefix"
    subprocess.run(
        [sys.executable, "-m", "workshop", "kernel", "install", "--prefix", str(prefix)],
        check=True,
        capture_output=True,
    )
    jupyter_path = str(prefix / "share" / "jupyter")
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = jupyter_path + (os.pathsep + old if old else "")
    yield jupyter_path
    # Torn down last of the session fixtures: kernels and VMs are gone by now.
    shutil.rmtree(_STATE, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd():
    if find_sshd() is None:
        pytest.fail("sshd is missing: install openssh-server (apt-get install openssh-server)")
    server = start_sshd()
    yield server
    server.stop()


def kernel_env(target: str, **extra: str) -> dict[str, str]:
    return clean_env(WORKSHOP_TARGET=target, **extra)


@pytest.fixture
def start_kernel(installed_kernelspec):
    """Factory: start_kernel(target, **env) -> KernelHarness, shut down after the test."""
    started: list[KernelHarness] = []

    def start(target: str = "local", **extra: str) -> KernelHarness:
        harness = KernelHarness(kernel_env(target, **extra))
        started.append(harness)
        return harness

    yield start
    for harness in started:
        harness.shutdown()


@pytest.fixture(params=["local", "ssh"])
def target(request) -> str:
    """Each behaviour runs on this machine and over the loopback sshd."""
    if request.param == "local":
        return "local"
    return request.getfixturevalue("sshd").url


@pytest.fixture
def kernel(start_kernel, target) -> KernelHarness:
    return start_kernel(target)


@pytest.fixture(scope="module", params=["local", "ssh"])
def shared_kernel(request, installed_kernelspec):
    """One kernel per test module and target, for tests that leave no state behind."""
    spec = "local" if request.param == "local" else request.getfixturevalue("sshd").url
    harness = KernelHarness(kernel_env(spec))
    yield harness
    harness.shutdown()


def pytest_sessionfinish(session, exitstatus):
    """Also when no fixture ran (collection only), leave no state directory behind."""
    shutil.rmtree(_STATE, ignore_errors=True)
