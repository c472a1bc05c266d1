"""Target docker:NAME, for real: cells in a container on this machine's Docker engine.

The course image is made here, offline, as the lab makes it: ``%rootfs`` (a
static busybox) plus this machine's bash and its libraries, then ``docker
import``.  One engine (started when none answers, and then stopped again), one
image, one container and one kernel serve the whole module; the kernel makes
the root filesystem on the local target, then moves into the container with
``%target``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from harness import KernelHarness, clean_env

from workshop.engine import engine_down, engine_problem, engine_up, import_rootfs
from workshop.targets import TargetError, parse_target


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


@pytest.fixture(scope="module")
def engine():
    """The engine that answers here, started for this module when none does."""
    if shutil.which("docker") is None:
        pytest.fail("docker is missing: bash scripts/setup --test installs Debian's docker.io")
    started = engine_problem() is not None
    if started:
        engine_up()
    yield
    if started:
        engine_down()


def _with_bash(rootfs: Path) -> None:
    """This machine's bash and the libraries it loads, copied into ``rootfs``."""
    libs = subprocess.run(["ldd", "/bin/bash"], capture_output=True, text=True, check=True).stdout
    for path in ["/bin/bash", *(word for word in libs.split() if word.startswith("/"))]:
        dest = rootfs / Path(os.path.realpath(path)).relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dest)
        alias = rootfs / path.lstrip("/")
        if alias != dest and not alias.exists():
            alias.parent.mkdir(parents=True, exist_ok=True)
            alias.symlink_to(os.path.realpath(path))


@pytest.fixture(scope="module")
def lab(engine, installed_kernelspec, tmp_path_factory):
    """(kernel, container name): a kernel whose cells run in a container of the course image."""
    tag = secrets.token_hex(4)
    image, name = f"workshop-test-course:{tag}", f"workshop-test-{tag}"
    rootfs = tmp_path_factory.mktemp("docker") / "rootfs"
    kernel = KernelHarness(clean_env(WORKSHOP_TARGET="local"))
    try:
        made = kernel.run(f"%rootfs {rootfs}")
        assert made.status == "ok", made.stderr
        _with_bash(rootfs)
        import_rootfs(rootfs, image)
        _docker("run", "-d", "--name", name, "--network", "none", image, "sleep", "1000000")
        moved = kernel.run(f"%target docker:{name}")
        assert moved.status == "ok", moved.stderr
        yield kernel, name
    finally:
        kernel.shutdown()
        _docker("rm", "-f", name, check=False)
        _docker("rmi", image, check=False)
        shutil.rmtree(rootfs, ignore_errors=True)


def test_cells_run_in_the_container_in_one_bash_that_keeps_its_state(lab):
    kernel, name = lab
    cid = _docker("inspect", "--format", "{{.Id}}", name).stdout.strip()
    assert kernel.run("cd /tmp && where=container; hostname").stdout == cid[:12] + "\n"
    result = kernel.run('echo "$where $PWD bash=${BASH_VERSION%%.*}"; tr "\\0" " " < /proc/1/cmdline; echo')
    assert result.stdout == f"container /tmp bash={os.environ.get('BASH_VERSION', '5').split('.')[0]}\n" \
                            "sleep 1000000 \n"
    assert result.record["target"]["kind"] == "docker" and result.record["target"]["name"] == name
    assert result.record["target"]["host"] is None and result.record["target"]["port"] is None


def test_an_interrupt_stops_the_command_inside_the_container(lab):
    kernel, name = lab
    threading.Timer(1.0, kernel.interrupt).start()
    started = time.monotonic()
    result = kernel.run("kept=yes; sleep 41; echo not reached", timeout=30)
    assert time.monotonic() - started < 1.0 + 3.0
    assert result.record["interrupted"] is True and "not reached" not in result.stdout
    left = _docker("exec", name, "ps", "-o", "args").stdout
    assert "sleep 41" not in left, left
    assert kernel.run("echo $kept").stdout == "yes\n"


def test_an_input_answer_reaches_the_shell_in_the_container(lab):
    kernel, _ = lab
    result = kernel.run('read -r -p "your name? " who; echo "hello $who from $(hostname)"', allow_stdin=True,
                        on_input=lambda prompt, password: "ada" if prompt == "your name? " else None)
    assert result.stdout.startswith("hello ada from ") and result.status == "ok"


def test_magics_work_in_the_container(lab):
    kernel, name = lab
    assert kernel.run("%%file /tmp/greet.sh --mode 755\necho greetings from $(hostname)").status == "ok"
    assert kernel.run("/tmp/greet.sh").stdout.startswith("greetings from ")
    made = kernel.run("%rootfs /tmp/inner")
    assert made.status == "ok", made.stderr
    inside = kernel.run("%%chroot /tmp/inner\necho hi > /note; ls /note /bin/sh")
    assert inside.stdout == "/bin/sh\n/note\n", inside.stderr
    # the files are the container's, not this machine's
    assert _docker("exec", name, "cat", "/tmp/inner/note").stdout == "hi\n"
    assert not Path("/tmp/inner/note").exists()


def test_a_missing_container_or_engine_is_said_in_one_sentence(lab, monkeypatch):
    kernel, name = lab
    with pytest.raises(TargetError, match="needs a container name"):
        parse_target("docker:")
    assert kernel.run("%target docker:workshop-no-such-container").status == "ok"
    left = _docker("exec", name, "ps", "-o", "args").stdout.split("\n")[1:]  # the old shell ended with its target
    assert [line for line in left if line and not line.startswith(("sleep 1000000", "ps -o"))] == [], left
    failed = kernel.run("echo hi")
    text = failed.stderr + "".join(e["evalue"] for e in failed.errors)
    assert "docker:workshop-no-such-container: the Docker engine has no container named " \
           "'workshop-no-such-container'; start one with `docker run -d --name workshop-no-such-container" in text
    assert kernel.run(f"%target docker:{name}").status == "ok"
    assert kernel.run("echo back").stdout == "back\n"
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(TargetError) as caught:
        parse_target(f"docker:{name}").prepare()
    assert str(caught.value) == (f"docker:{name}: the Docker engine does not answer at "
                                 "unix:///nonexistent/docker.sock; `workshop docker up` (as root) starts it")


def test_doctor_checks_the_container_and_requires_the_engine(lab):
    from workshop.doctor import run_checks

    _, name = lab
    rows = {check.name: check for check in run_checks(f"docker:{name}")}
    assert rows["target reachable"].ok and rows["Docker engine"].ok and rows["Docker engine"].required
    assert rows["setup: Docker"].required and not rows["setup: qemu micro VM"].required
    missing = {check.name: check for check in run_checks("docker:workshop-no-such-container")}
    assert not missing["target reachable"].ok and "docker run -d --name" in missing["target reachable"].fix
