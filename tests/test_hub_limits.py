"""A student's ceiling on the course server, for real: the cgroup the hub's spawner
puts a student's server in (workshop/hub/limits.py), with a real local user (made
with useradd, removed after) running a shell the way the spawner starts a server —
joined to the cgroup as root, then the student's uid. What the student does from a
terminal of their own (the VM limits of hub.json are kept by the kernel, which a
student can bypass) stays under it: memory, tasks, no way out, nothing left after."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess

import pytest

from workshop.hub.limits import StudentCgroup, end_all, parent_name, student_ceiling

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and users need root")]

MEMORY = 96 << 20
TASKS = 40


@pytest.fixture
def student():
    name = "wslim" + secrets.token_hex(3)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", name],
                   check=True, capture_output=True)
    parent = parent_name(50000 + secrets.randbelow(10000))
    cgroup = StudentCgroup(name, parent)
    cgroup.create(MEMORY, TASKS)
    try:
        yield name, cgroup
    finally:
        end_all(parent)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def as_student(name: str, cgroup: StudentCgroup, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``script`` run by bash as the student, started as the hub's spawner starts a server."""
    user = pwd.getpwnam(name)
    join = cgroup.join_in_child()

    def preexec() -> None:
        join()
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)
    return subprocess.run(["bash", "-c", script], preexec_fn=preexec, capture_output=True, text=True,
                          timeout=timeout, cwd=user.pw_dir, env={"PATH": "/usr/bin:/bin", "HOME": user.pw_dir})


def test_what_a_student_starts_stays_in_their_cgroup_and_they_cannot_leave_it_or_lift_it(student):
    name, cgroup = student
    procs = " ".join(str(p) for p in cgroup.procs_files)
    limit_files = " ".join(str(d / f) for d in cgroup.dirs for f in os.listdir(d)
                           if f in ("memory.max", "memory.limit_in_bytes", "pids.max"))
    done = as_student(name, cgroup, f"""
cat /proc/self/cgroup
for f in {limit_files}; do echo unlimited > "$f" 2>/dev/null && echo "lifted $f"; done
for f in {procs}; do  # into the hub's cgroup, or the top one
  for out in "${{f%/*/*}}" "${{f%/*/*/*}}"; do echo $$ > "$out/cgroup.procs" 2>/dev/null && echo "left to $out"; done
done
cat /proc/self/cgroup | grep -c {name}
""")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.endswith(f"/{name}") for line in lines), done.stdout
    assert "lifted" not in done.stdout and "left to" not in done.stdout, done.stdout
    assert int(lines[-1]) >= 1, done.stdout  # still inside: the limits hold for all it starts


def test_memory_past_the_ceiling_is_killed_and_a_fork_bomb_stops_at_the_task_limit(student):
    name, cgroup = student
    done = as_student(name, cgroup, f"""
python3 -c 'b = bytearray({3 * MEMORY}); print("allocated")'
echo "memory status $?"
python3 -c '
import os, signal, time
kids = []
try:
    for _ in range({TASKS * 3}):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
except OSError as e:
    print("refused:", os.strerror(e.errno))
print("running", len(kids))
for pid in kids:
    os.kill(pid, signal.SIGKILL)
'
echo done
""")
    out = done.stdout
    assert "allocated" not in out and "memory status 137" in out, (out, done.stderr)
    running = int(out.split("running ")[1].split()[0])
    assert 0 < running < TASKS and "refused: Resource temporarily unavailable" in out, out
    assert "done" in out


def test_a_process_the_student_detached_is_ended_with_their_cgroup(student):
    name, cgroup = student
    done = as_student(name, cgroup, "setsid sleep 1001 < /dev/null > /dev/null 2>&1 & echo $!")
    assert done.returncode == 0, done.stderr
    assert cgroup.pids(), "the detached sleep should still run in the cgroup"
    assert cgroup.end(grace=2)
    assert not any(d.exists() for d in cgroup.dirs)
    gone = subprocess.run(["pgrep", "-u", name, "-f", "sleep 1001"], capture_output=True)
    assert gone.returncode == 1, gone.stdout


def test_the_ceiling_follows_the_vm_limits_unless_the_instructor_sets_one():
    vm = {"enabled": True, "per_student": 2, "memory_mb": 512}
    memory, tasks = student_ceiling({}, vm)
    assert memory == (1536 + 2 * (512 + 256)) << 20 and tasks == 1024
    assert student_ceiling({}, vm | {"enabled": False})[0] == 1536 << 20
    assert student_ceiling({"student": {"memory_mb": 3000, "tasks": 200}}, vm) == (3000 << 20, 200)


def test_no_cgroup_of_a_hub_is_left_once_it_ended(student):
    name, cgroup = student
    as_student(name, cgroup, "setsid sleep 1002 < /dev/null > /dev/null 2>&1 &")
    parent = cgroup.tops[0].name
    assert end_all(parent) == []
    assert not any(top.exists() for top in cgroup.tops), [str(t) for t in cgroup.tops]
    assert subprocess.run(["pgrep", "-u", name, "-f", "sleep 1002"], capture_output=True).returncode == 1
