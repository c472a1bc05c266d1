"""The README's two commands on a fresh Debian, as a new user runs them.

``scripts/fresh-debian`` unpacks a ``debootstrap --variant=minbase`` system with
only git and python3 added (cached as a tarball under
/var/cache/workshop/fresh-debian, rebuilt weekly), gives it the host's CAs, apt
and pip configuration, clones this repository into it and runs a command there
as root, in private mount namespaces rooted in the copy; see its header.  Here the
command is the README's own text, taken from its "Two commands" section so
that the two cannot drift: the first command in full, then the second with a
selection of tests appended (the whole suite would take an hour), which shows
that the runner starts and real kernel tests pass inside, among them the one
that drops an SSH connection (OpenSSH 10 on Debian 13 has ``sshd-session``).

The README's course server gets a root of its own (trixie only): its two lines
as written, the hub moved to a free port first (the root shares this machine's
network), then a student's first session there (tests/fresh_hub.py). Most of its
time goes to building the students' VM image inside the root; it is marked
``vm``, so that scripts/test runs it in the lane beside the host's tests.

Each suite costs one to two minutes with the tarball cached (half a minute
more to build it) and reaches Debian's archive and PyPI.
``WORKSHOP_FRESH_SUITES`` picks the suites (default ``bookworm trixie``; empty
skips these tests).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from harness import three_free_ports

ROOT = Path(__file__).resolve().parents[1]
FRESH = ROOT / "scripts" / "fresh-debian"
SUITES = os.environ.get("WORKSHOP_FRESH_SUITES", "bookworm trixie").split()
INNER_TESTS = "-x -q -p no:cacheprovider tests/test_targets.py -k 'dropped or one_connection'"

pytestmark = [pytest.mark.timeout(2400), pytest.mark.slow]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def readme_hub_lines() -> list[str]:
    """The two lines of the README's "A course server": setup, then start."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### A course server", 1)[1].split("\n#", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _require() -> None:
    if os.geteuid() != 0:
        pytest.skip("a fresh Debian needs root (debootstrap, mounts, pivot_root)")
    if not SUITES:
        pytest.skip("WORKSHOP_FRESH_SUITES is empty")
    missing = [t for t in ("debootstrap", "unshare", "git") if not (shutil.which(t) or os.path.exists(f"/usr/sbin/{t}"))]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: bash scripts/setup --test installs them")


_COPIES: dict[Path, tuple[int, int]] = {}


def _remember_copy(work: Path) -> None:
    """Note the copy's root directory while it exists: its processes are found by
    it after the copy is removed."""
    try:
        st = os.stat(work / "root")
        _COPIES[work] = (st.st_dev, st.st_ino)
    except OSError:
        pass


def _roots_under(work: Path) -> list[int]:
    """Processes whose root directory is the copy in ``work``. The copy is their
    namespace's root (pivot_root), so /proc/PID/root reads as "/" from here:
    they are found by the directory's identity, not its path."""
    _remember_copy(work)
    copy = _COPIES.get(work)
    if copy is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/root")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == copy:
                found.append(int(entry))
    return found


def _mounts_under(work: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if f" {work}/" in line or f" {work} " in line]


def fresh(suite: str, command: str, work: Path, timeout: float, *options: str) -> subprocess.CompletedProcess:
    """Run ``command`` on a fresh ``suite``; afterwards nothing of it may be left."""
    proc = subprocess.Popen(
        ["bash", str(FRESH), "--suite", suite, "--workdir", str(work), *options, command],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("fresh-debian: running in"):
                _remember_copy(work)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
        reader.join(60)
        out = "".join(lines)
    finally:
        if proc.poll() is None:  # timed out, or this test was interrupted: stop it as a user would
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert_nothing_left(work)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def assert_nothing_left(work: Path) -> None:
    mounts = _mounts_under(work)
    assert not mounts, f"mounts left under {work}: {mounts}"  # and the copy is not removed
    pids = _roots_under(work)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    left = work.exists()
    if left:
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    assert not pids, f"processes left running in {work}: {pids}"
    assert not left, f"{work} was not removed"


def test_ci_runs_the_readme_test_command():
    first, second = readme_commands()
    assert first.startswith("bash scripts/setup") and "workshop run notebooks/" in first
    assert second.startswith("bash scripts/setup --test &&") and "scripts/test" in second
    ci = (ROOT / ".ci" / "run").read_text()
    # the README's second command, word for word, run in a fresh Debian 13 root (the whole suite),
    # and with the fast tier in a fresh Debian 12 root
    assert f"SECOND='{second}'" in ci.splitlines(), ".ci/run must run the README's test command as written there"
    runs = [line for line in ci.splitlines() if "scripts/fresh-debian --suite" in line]
    assert any(re.search(r'--suite trixie .*"\$SECOND"( |$)', line) for line in runs), runs
    assert any("--suite bookworm" in line for line in runs), runs
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "--break-system-packages" not in setup.replace("never `--break-system-packages`", "")


def test_a_failing_or_stopped_command_leaves_nothing(tmp_path):
    """Processes it left running are killed, its mounts go, the copy is removed."""
    _require()
    work = tmp_path / "failing"
    done = fresh(SUITES[0], "sleep 1001 & setsid sleep 1002 & mkdir -p /mnt/x && mount -t tmpfs t /mnt/x; exit 3",
                 work, timeout=600)
    assert done.returncode == 3, done.stdout
    assert "ending what the command left running" in done.stdout
    # stopped from outside while it runs (what a timeout does)
    work = tmp_path / "stopped"
    proc = subprocess.Popen(
        ["bash", str(FRESH), "--suite", SUITES[0], "--workdir", str(work),
         "mount -t tmpfs t /mnt; echo started; sleep 1003; echo not-reached"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        for line in proc.stdout:
            if line.strip() == "started":
                break
        assert _roots_under(work), "the command should be running in the copy"
        os.killpg(proc.pid, signal.SIGTERM)
        rest = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "not-reached" not in rest
    deadline = time.monotonic() + 30
    while (_roots_under(work) or _mounts_under(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_nothing_left(work)


def test_what_ends_while_the_command_runs_is_reaped_at_once_and_a_cache_is_shared(tmp_path):
    """A daemon that ends (qemu started with -daemonize and stopped) is an orphan of
    the subreaper: reaped when it ends, not left a zombie until the command is over.
    --cache DIR: DIR is the machine's own, at the same path in the copy."""
    _require()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "kept").write_text("from an earlier run\n")
    count = 'cat /proc/[0-9]*/stat 2>/dev/null | awk -v p=$PPID \'$4 == p && $3 == "Z"\' | wc -l'
    done = fresh(SUITES[0], f'(sleep 1 &); sleep 3; echo "zombies: $({count})"; cat {cache}/kept; echo new > {cache}/new',
                 tmp_path / "reaped", 600, "--cache", str(cache))
    assert done.returncode == 0, done.stdout
    assert "zombies: 0" in done.stdout, done.stdout[-2000:]
    assert "from an earlier run" in done.stdout and (cache / "new").read_text() == "new\n"


@pytest.mark.parametrize("suite", SUITES)
def test_the_readme_commands_on_a_fresh_debian(suite, tmp_path):
    _require()
    first, second = readme_commands()
    # markers are printed with printf, so that the script's own text (which
    # fresh-debian echoes) does not contain them
    script = f"""set -e
mark() {{ printf '=%s=\\n' "$*"; }}
mark first command
{first}
mark setup again
start=$(date +%s%N)
bash scripts/setup > /tmp/again.log 2>&1
mark again took $(( ($(date +%s%N) - start) / 1000000 )) ms
cat /tmp/again.log
mark system python
cd / && ! python3 -c 'import workshop' 2>/dev/null && ! python3 -m pip --version 2>/dev/null && echo untouched
cd /root/workshop
mark doctor
COLUMNS=250 workshop doctor --target local || true
mark ordinary user
runuser -u nobody -- sh -lc 'cd / && command -v workshop && workshop --version'
/opt/workshop/bin/jupyter kernelspec list
mark second command
{second} {INNER_TESTS}
"""
    started = time.monotonic()
    done = fresh(suite, script, tmp_path / "fresh", timeout=1800)
    took = time.monotonic() - started
    out = done.stdout
    print(f"\n{suite}: {took:.0f} s\n{out[-3000:]}")
    assert done.returncode == 0, out[-8000:]
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        assert re.search(rf"✔ notebooks/{re.escape(name)}: (\d+)/\1 checks passed", out), f"{name} did not pass:\n{out[-8000:]}"
    sections = dict(re.findall(r"^=([a-z ]+?)(?: took \d+ ms)?=\n(.*?)(?=^=[a-z]|\Z)", out, re.S | re.M))
    again_ms = int(re.search(r"^=setup again=\n=again took (\d+) ms=$", out, re.M).group(1))
    assert again_ms < 5000, sections
    again = sections["again"]
    assert "apt-get" not in again and "pip install" not in again and "venv" not in again, again
    assert "untouched" in sections["system python"]
    doctor = {line.split("│")[2].replace("(optional)", "").strip(): line
              for line in sections["doctor"].splitlines() if line.count("│") > 3}
    assert "✔" in doctor["setup: local notebooks"], sections["doctor"]
    vm = doctor["setup: qemu micro VM"]  # only the default part is installed
    assert "✘" in vm and "missing" in vm and "qemu-system-x86" in vm and "bash scripts/setup --vm" in vm, vm
    user = sections["ordinary user"]
    assert "/usr/local/bin/workshop" in user and "workshop, version" in user, user
    assert re.search(r"workshop\s+/usr/local/share/jupyter/kernels/workshop", user), user
    inner = sections["second command"]
    assert re.search(r"^2 passed", inner, re.M), inner[-4000:]


@pytest.mark.vm
@pytest.mark.timeout(3600)
def test_the_readme_course_server_on_a_fresh_debian(tmp_path):
    """The README's two course-server lines on a fresh Debian 13, then a student's
    first session: they log in with their password, their server's kernel is the
    workshop kernel aimed at their own VM, and a cell runs as root in that VM,
    restored from the snapshot setup built; `workshop hub down` leaves nothing."""
    _require()
    if "trixie" not in SUITES:
        pytest.skip("WORKSHOP_FRESH_SUITES has no trixie")
    setup, up = readme_hub_lines()
    assert setup.startswith("bash scripts/setup --hub --vm ") and up.startswith("workshop hub up "), (setup, up)
    port = three_free_ports()  # the root shares the machine's network: not the README's 8000
    password = "Course-" + secrets.token_hex(8)
    # the root shares the machine's processes too: a uid no user here has, so that no test
    # beside this one that looks for (or ends) the processes of its own students sees these
    uid = 50000 + secrets.randbelow(10000)
    while _has_uid(uid):
        uid += 1
    hub = "/var/lib/workshop-hub"
    script = f"""set -e
mark() {{ printf '=%s=\\n' "$*"; }}
mark setup
start=$(date +%s)
{setup}
echo "setup took $(( $(date +%s) - start )) s"
mark port
workshop hub install --port {port}
mark up
{up}
mark status
workshop hub status
mark student
useradd --create-home --shell /bin/bash --uid {uid} ada
usermod -aG students ada
echo "ada:{password}" | chpasswd
id -u ada
mark writable
runuser -u ada -- find {hub}/vm -writable 2>/dev/null || true
mark session
$(dirname "$(readlink -f "$(command -v workshop)")")/python tests/fresh_hub.py {port} ada {password}
mark status with the server
workshop hub status
mark down
workshop hub down
workshop hub status || echo "status exit $?"
"""
    started = time.monotonic()
    done = fresh("trixie", script, tmp_path / "fresh", timeout=3300)
    took = time.monotonic() - started
    out = done.stdout
    print(f"\ncourse server on trixie: {took:.0f} s\n{out[-4000:]}")
    assert done.returncode == 0, out[-8000:]
    assert "ending what the command left running" not in out, "the hub was not down when the command ended"
    sections = dict(re.findall(r"^=([a-z ]+)=\n(.*?)(?=^=[a-z]|\Z)", out, re.S | re.M))
    print(re.search(r"^setup took \d+ s$", out, re.M).group(0))
    assert "the students' VM: building its image and snapshot once" in sections["setup"], sections["setup"][-3000:]
    assert f"{hub}/hub.json: 127.0.0.1:{port}, the users of group students" in sections["port"], sections["port"]
    assert sections["up"].startswith(f"http://127.0.0.1:{port}/ (log: {hub}/hub.log)"), sections["up"]
    assert sections["status"].startswith("running (pid "), sections["status"]
    assert sections["student"].split()[-1] == str(uid), sections["student"]
    assert sections["writable"].split() == [], "a student can change the hub's VM cache"  # reading it: the cell ran
    session = dict(line.split(": ", 1) for line in sections["session"].splitlines() if ": " in line)
    assert session.get("login page") == "200 True" and session.get("login") == "302", sections["session"]
    assert session["user"] == "ada" and session["default kernel"] == "workshop", session
    assert session["kernel runs as"] == str(uid) and session["kernel target"] == "qemu:course", session
    assert session["cell status"] == "ok" and session["cell uid"] == "0", session  # root, on their own VM
    assert session["cell boot"] == "another kernel's" and "qemu" in session["cell target"], session
    assert "ada: server running" in sections["status with the server"], sections["status with the server"]
    assert sections["down"].split("\n")[:2] == ["stopped", f"no hub is running from {hub}"], sections["down"]
    assert "status exit 1" in sections["down"], sections["down"]
