"""The workshop notebooks run headless on this machine with every check passing,
and leave the mount table and the cgroup trees as they found them; and they
all pass on the built-in qemu: VM too (one VM for all of them).  On this machine
the Docker engine is up for them (``docker_engine``): notebook 8 needs it, and
notebook 7's docker cells run on it rather than saying they skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workshop.runner import run_notebook

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))
WORKDIR = "/var/tmp/container-workshop"


def mounts() -> list[str]:
    """Mount points (the mount table without ids that change on every mount), but those
    of the other lane of tests (the VM image a vm test builds, under a test data dir) and
    the Docker engine's own (its store, its network namespaces)."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return sorted(p for p in points if not p.startswith(("/tmp/workshop-tests-", "/var/tmp/wsvm", "/var/lib/docker",
                                                         "/run/docker", "/var/run/docker")))


def cgroup_dirs() -> list[str]:
    """Every cgroup directory of every mounted cgroup hierarchy."""
    found = []
    with open("/proc/self/mounts") as f:
        roots = [line.split()[1] for line in f if line.split()[2] in ("cgroup", "cgroup2")]
    for root in roots:
        for path, dirs, _ in os.walk(root):
            # the grader's own rerun cgroups come and go with other tests (kernel_cgroup.KernelCgroup);
            # the engine makes its parent cgroup `docker` at its first container and keeps it;
            # a course hub's students' cgroups come and go with the hub tests of the vm lane
            # (tests/test_hub_limits.py and test_hub.py check that a hub removes them)
            dirs[:] = [d for d in dirs if d != "workshop-runs"
                       and not (path == root and (d == "docker" or d.startswith("workshop-hub-")))]
            found.extend(os.path.join(path, d) for d in dirs)
    return sorted(found)


def leftovers_cleanup() -> None:
    """Undo what a failed run may have left, so later tests start clean."""
    for point in reversed(mounts()):
        if point.startswith(WORKDIR + "/"):
            subprocess.run(["umount", "-l", point], check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", WORKDIR], check=False)


@pytest.fixture(autouse=True)
def root_only():
    if os.geteuid() != 0:
        pytest.skip("the workshop notebooks need root")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_clean(notebook, tmp_path, installed_kernelspec, docker_engine):
    """Each notebook on this machine, every check passing, nothing left behind.  The
    README's command over all of them (`workshop run notebooks/*.ipynb`, local) runs
    in test_setup_fresh.py, on fresh Debian 12 and 13; on a VM, below."""
    before_mounts, before_cgroups = mounts(), cgroup_dirs()
    try:
        result = run_notebook(notebook, out_dir=tmp_path, target="local", timeout=120)
        failed = [f"{c.key}: {c.message} (got {c.got[-800:]!r})" for c in result.failed_checks]
        assert result.error is None, f"{result.error}; failed checks: {failed}"
        assert [c.index for c in result.cells if c.status != "ok"] == []
        assert result.checks, "the notebook has no checks"
        assert failed == []
        after_mounts, after_cgroups = mounts(), cgroup_dirs()
        assert after_mounts == before_mounts, set(after_mounts) ^ set(before_mounts)
        assert after_cgroups == before_cgroups, set(after_cgroups) ^ set(before_cgroups)
        assert not os.path.exists(WORKDIR), "the work directory is left"
    finally:
        leftovers_cleanup()


def _workshop_cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("JPY_SESSION_NAME", None)
    env.pop("WORKSHOP_TARGET", None)
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.timeout(3600)
@pytest.mark.vm
def test_every_notebook_passes_on_the_qemu_vm(tmp_path, installed_kernelspec):
    """`workshop run notebooks/*.ipynb --target qemu:NAME`: the built-in VM (cgroup v2,
    memory and pids controllers) is built and booted once and serves every
    notebook in turn; each cleans up after itself, as on the local target.
    Notebook 8 uses the Docker engine the VM starts at boot (docker.io is in its image)."""
    missing = [t for t in ("qemu-system-x86_64", "qemu-img") if shutil.which(t) is None]
    assert not missing, f"missing {', '.join(missing)}: bash scripts/setup --vm"
    name = "nbrun"
    paths = [str(p) for p in sorted(NOTEBOOKS[0].parent.glob("*.ipynb")) if not p.name.endswith(".out.ipynb")]
    started = time.monotonic()
    try:
        # a cell's limit for a guest under emulation on a host busy with the other lane of tests
        done = _workshop_cli("run", *paths, "--target", f"qemu:{name}", "--timeout", "600", "--out", str(tmp_path),
                             "--junit", str(tmp_path / "j.xml"), timeout=3000)
        said = done.stdout + done.stderr
        first = [line for line in said.splitlines() if "✘" in line or "timed out" in line or "Error" in line][:15]
        assert done.returncode == 0, "\n".join(first) + "\n...\n" + said[-3000:]
        assert (tmp_path / "j.xml").read_text().count("<failure") == 0
    finally:
        _workshop_cli("vm", "destroy", name, timeout=120)
        print(f"\nall notebooks on qemu:{name}: {time.monotonic() - started:.0f} s (image build and boot included)")
    assert name not in _workshop_cli("vm", "list", timeout=60).stdout
