"""Fixtures: the installed kernelspec, a real sshd on loopback, kernels per target."""

from __future__ import annotations

import json
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


# ---- markers given by what a test uses (setup.cfg lists them) ----------------------
# A test that starts a kernel is slow (a second or more each, and many of them);
# a test run over the ssh target or with the sshd fixture talks to the suite's sshd.
KERNEL_FIXTURES = {"start_kernel", "kernel", "shared_kernel", "notebook_probe",
                   # fixtures of test modules that run notebooks in kernels (or a Docker engine)
                   "lab", "klass", "canvas_class", "runs", "executed", "dask_cluster", "engine", "course",
                   "docker_engine"}


# The tests that build whole fresh Debian roots (a quarter of the host lane) wait on apt,
# pip and the disk more than they compute.  Run first, they overlap the vm lane's busy
# VMs (scripts/test runs both lanes at once), and the host lane's computing tests get the
# CPU to themselves at its end, where it used to idle at 40 % while those roots were set up.
RUN_FIRST = ("test_setup_fresh.py",)


def pytest_collection_modifyitems(config, items):
    # stable: the rest keep their order; the vm lane's own fresh root keeps its place
    items.sort(key=lambda item: item.path.name not in RUN_FIRST or item.get_closest_marker("vm") is not None)
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if names & KERNEL_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if "sshd" in names or "ssh" in (params.get("target"), params.get("shared_kernel")):
            item.add_marker(pytest.mark.ssh)


def pytest_sessionfinish(session, exitstatus):
    """Also when no fixture ran (collection only), leave no state directory behind."""
    shutil.rmtree(_STATE, ignore_errors=True)


# ---- the probe of a shipped notebook, run once per test session --------------------
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="session")
def docker_engine():
    """The Docker engine notebooks 7 and 8 use on the local target: the one that answers, or one
    started with ``workshop docker up``'s code and stopped again at the end of the session."""
    from workshop.engine import docker_command, engine_down, engine_problem, engine_up

    # without Docker installed nothing starts, and notebook 8's first cell says what is missing
    started = docker_command() is not None and engine_problem() is not None
    if started:
        engine_up()
    yield
    if started:
        engine_down()


@pytest.fixture(scope="session")
def notebook_probe(installed_kernelspec, tmp_path_factory, request):
    """Factory: ``notebook_probe("02")`` -> (the finished ``workshop probe`` process, its JSON report).

    The real CLI probes ``notebooks/NN-*.ipynb`` on the local target, once per session: every test
    that asks for the same notebook gets the same run (a probe takes 15-180 s per notebook).
    ``notebook_probe("02", cell="nb02-install")`` probes a cell that is no task: a copy of the notebook
    cut after that cell, the cell made a task named by its id, its clean-up cell (id ``*-cleanup``)
    kept at the end.  Notebook 08 is probed with the Docker engine up (``docker_engine``).
    Needs root."""
    if os.geteuid() != 0:
        pytest.skip("the probe reruns the notebook on the local target: mounts, namespaces and cgroups need root")
    done: dict[tuple[str, str | None], tuple[subprocess.CompletedProcess, dict | None]] = {}
    tmp = tmp_path_factory.mktemp("notebook-probe")

    def probe(number: str, cell: str | None = None) -> tuple[subprocess.CompletedProcess, dict | None]:
        if (number, cell) not in done:
            if number == "08":  # its cells run on the Docker engine
                request.getfixturevalue("docker_engine")
            source = next(NOTEBOOKS.glob(f"{number}-*.ipynb"))
            args = [str(source)]
            if cell:
                args = [str(_cell_as_task(source, cell, tmp / f"{source.stem}-{cell}.ipynb")), "--task", cell]
            out = tmp / f"{source.stem}-{cell or 'tasks'}.json"
            env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "WORKSHOP_TARGET")}
            try:
                run = subprocess.run([sys.executable, "-m", "workshop", "probe", *args, "--target", "local",
                                      "--run-student-code-on-this-machine", "--json", str(out)],
                                     capture_output=True, text=True, timeout=1800, env=env)
            finally:
                from test_notebooks import leftovers_cleanup  # what a killed run of a notebook left

                leftovers_cleanup()
            found = json.loads(out.read_text()) if out.exists() else None
            done[number, cell] = (run, found[0] if found else None)
        return done[number, cell]

    return probe


def _cell_as_task(source: Path, cell_id: str, out: Path) -> Path:
    nb = json.loads(source.read_text())
    at = next(i for i, cell in enumerate(nb["cells"]) if cell.get("id") == cell_id)
    cells = nb["cells"][: at + 1] + [c for c in nb["cells"][at + 1:] if str(c.get("id", "")).endswith("-cleanup")]
    meta = cells[at].setdefault("metadata", {}).setdefault("workshop", {})
    meta.update(task=True, name=cell_id)
    nb["cells"] = cells
    out.write_text(json.dumps(nb))
    return out
