"""Benchmark: a class working at once on one course server, each student on their own VM.

For each count N of ``--students``: N students, each a workshop kernel run as that
student (a local user) with the hub's VM environment, so each works as root on their
own ``qemu:course`` VM restored from the hub's shared snapshot. All open their
notebook at once (the first cell restores their VM), make a small root filesystem,
sit idle for ``--idle`` seconds, then work for ``--duration`` seconds like people in a
workshop: a small cell (``echo``, ``ls``, ``cat``, a pipe) or a container cell
(``%%unshare``, or ``%%unshare`` with ``%%chroot``), then ``--think`` seconds on average
(0.5 to 1.5 times it; 0: cells back to back, a stress test) before the next.

Reported per N: the first cell (VM restored, the kernel's SSH connection); every cell's
latency (p50, p95, p99, max) by kind and over all, with what the kernel itself took,
what qemu ran meanwhile and how long it waited for a CPU; the host's load average and
how busy its CPUs were, and how much of that was other work than this benchmark; CPU
per VM idle and working (from qemu's /proc); RAM per student (qemu and the kernel,
PSS and RSS); and whether the target holds: 8 students, cell p99 under 1 s.

As root. By default the students are new local users (removed at the end) on a hub
directory of the benchmark's own (its VM cache is /var/tmp/wsvm-hub, the image linked
from $WORKSHOP_VM_CACHE when that has it). With ``--hub-dir`` and ``--users``, a real
hub's settings, kernelspec, VM cache and users (whose own VMs count against their
``per_student`` limit). Everything it started is stopped at the end, on Ctrl-C too.

    WORKSHOP_VM_CACHE=/var/tmp/wsvm python bench/hub_load.py --students 2,4,8 [--duration 120] [--think 5]
    python bench/hub_load.py --hub-dir /var/lib/workshop-hub --users ann,bob --students 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from students import (  # noqa: E402
    Student,
    add_users,
    hub_vm,
    remove_users,
    student_env,
    student_tools,
    users_cannot_run_python,
)
from vm_start import _cpu, _load, _machine  # noqa: E402

TARGET_STUDENTS, TARGET_P99 = 8, 1.0
# what a student types, by kind, and how often each kind comes (weights)
CELLS = {
    "echo": ['n=$((n+1)); echo "step $n"'],
    "command": ["ls -l /etc/hostname /etc/os-release", "cat /etc/os-release", "ls rootfs/bin | head -5"],
    "pipe": ["ps -e | wc -l", "seq 500 | sort -rn | head -3", "grep -c . /etc/passwd | tr 0-9 0-9"],
    "unshare": ["%%unshare -fmuipn --mount-proc --hostname box\nhostname; ps -e | wc -l"],
    "chroot": ["%%unshare -fmuipn --mount-proc --hostname box\n%%chroot rootfs\nhostname; ps | wc -l; ls /"],
}
WEIGHTS = {"echo": 2, "command": 2, "pipe": 2, "unshare": 1, "chroot": 1}
SETUP = ("mkdir -p /root/lab && cd /root/lab", "%rootfs rootfs")


@dataclass
class Seat:
    """A student at work: the driver of their kernel, their VM's and kernel's pids, their cells."""

    student: Student
    first: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    cells: list[dict] = field(default_factory=list)
    busy: bool = False
    lost: str = ""  # why the student stopped before the end (their kernel or VM gone)

    def pids(self) -> list[int]:
        return [p for p in (self.state.get("pid"), self.state.get("kernel_pid"), self.student.proc.pid) if p]

    def timed_cell(self, kind: str, code: str) -> dict:
        """The cell, with what qemu and the kernel spent while it ran (CPU, waiting for a CPU)."""
        qemu, kernel = self.state["pid"], self.state["kernel_pid"]
        before = _cpu(qemu)[0], _cpu(kernel)[0], _waits(qemu)
        self.busy = True
        try:
            reply = self.student.cell(code)
        finally:
            self.busy = False
        after = _cpu(qemu)[0], _cpu(kernel)[0], _waits(qemu)
        record = reply.get("record") or {}
        waited = max((after[2][tid] - before[2].get(tid, 0.0) for tid in after[2]), default=0.0)
        return {"kind": kind, "ok": reply["status"] == "ok", "seconds": reply["seconds"],
                "kernel_s": record.get("duration"), "qemu_cpu_s": after[0] - before[0], "qemu_wait_s": waited,
                "kernel_cpu_s": after[1] - before[1], "errors": reply["errors"][:1]}


def _waits(pid: int) -> dict[str, float]:
    """Seconds each thread of ``pid`` has waited, runnable, for a CPU (schedstat); the
    longest growth of these over a cell is how long the guest's work waited behind others."""
    waits = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                waits[tid] = int(f.read().split()[1]) / 1e9
    return waits


def _cpu_seconds(pid: int) -> float | None:
    try:
        return _cpu(pid)[0]
    except OSError:  # the process is gone
        return None


def _host_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole host since boot, over all cores."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:8]) - idle) / hz, sum(ticks[:8]) / hz


def _memory(pid: int) -> dict:
    """PSS and RSS of a process, in MiB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                fields[name.lower()] = int(rest.split()[0]) / 1024
    return fields


def _guest_ram_mb(pid: int, memory_mb: int) -> float:
    """How much of qemu's RSS is the guest's RAM (its one mapping of the VM's memory size), in MiB."""
    size = rss = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:") and size // 1024 == memory_mb:
                rss += int(line.split()[1])
    return rss / 1024


class Watch:
    """The host over a phase: load average every second, CPU busy in all, and CPU used by ``pids``
    (a process that ends meanwhile counts with its last value, and is not in ``alive``)."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Watch:
        self.started = time.monotonic()
        self.host_before = _host_cpu()
        self.ours_before = {pid: _cpu_seconds(pid) or 0.0 for pid in self.pids}
        self.last = dict(self.ours_before)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            with open("/proc/loadavg") as f:
                self.loads.append(float(f.read().split()[0]))
            self._read_ours()

    def _read_ours(self) -> set[int]:
        alive = set()
        for pid in self.pids:
            now = _cpu_seconds(pid)
            if now is not None:
                self.last[pid] = now
                alive.add(pid)
        return alive

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.monotonic() - self.started
        (busy_after, all_after), (busy_before, all_before) = _host_cpu(), self.host_before
        busy, total = busy_after - busy_before, all_after - all_before
        self.alive = self._read_ours()
        self.ours = {pid: self.last[pid] - before for pid, before in self.ours_before.items()}
        self.host_busy_s = busy
        self.host_busy = busy / total if total else 0.0

    def summary(self) -> dict:
        ours = sum(self.ours.values())
        return {"seconds": round(self.seconds, 1), "load_max": max(self.loads, default=None),
                "load_mean": round(statistics.mean(self.loads), 2) if self.loads else None,
                "host_cpu_busy": round(self.host_busy, 2), "ours_cpu_s": round(ours, 1),
                "others_cpu_s": round(max(0.0, self.host_busy_s - ours), 1)}


def _in_parallel(seats: list[Seat], work) -> list:
    results: list = [None] * len(seats)

    def one(i: int) -> None:
        results[i] = work(seats[i])

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(seats))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _first_cell(seat: Seat) -> None:
    started = time.monotonic()
    reply = seat.student.cell("id -u")
    seat.first = {"seconds": reply["seconds"], "wall_s": time.monotonic() - started, "ok": reply["status"] == "ok",
                  "errors": reply["errors"][:1]}
    seat.state = seat.student.ask(state=True)
    seat.first |= {"restore_s": seat.state.get("restore_seconds"), "vm_up_s": seat.state.get("boot_seconds")}
    if seat.first["ok"]:
        for code in SETUP:
            setup = seat.student.cell(code)
            if setup["status"] != "ok":
                seat.first |= {"ok": False, "errors": [f"{code!r} failed: {setup['errors']} {setup['shown'][-300:]}"]}
                return


def _work(seat: Seat, until: float, think: float, seed: int, stop: threading.Event) -> None:
    rng = random.Random(seed)
    kinds = list(WEIGHTS)
    while time.monotonic() < until and not stop.is_set():
        kind = rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
        try:
            seat.cells.append(seat.timed_cell(kind, rng.choice(CELLS[kind])))
        except (AssertionError, OSError) as exc:  # the driver, kernel or VM ended: by someone else's hand
            seat.lost = f"{seat.student.name}: {type(exc).__name__}: {str(exc)[-300:]}"
            return
        if think and stop.wait(rng.uniform(0.5, 1.5) * think):
            break


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def _cell_table(cells: list[dict]) -> dict:
    table = {}
    for kind in [*WEIGHTS, "all"]:
        rows = [c for c in cells if kind in ("all", c["kind"])]
        if not rows:
            continue
        table[kind] = _percentiles([c["seconds"] for c in rows]) | {
            "failed": sum(not c["ok"] for c in rows),
            "kernel_p50": statistics.median(c["kernel_s"] or 0 for c in rows),
            "qemu_cpu_p50": statistics.median(c["qemu_cpu_s"] for c in rows),
            "qemu_wait_p50": statistics.median(c["qemu_wait_s"] for c in rows),
            "qemu_wait_p99": _percentiles([c["qemu_wait_s"] for c in rows])["p99"],
            # what the cell would take had qemu not waited for a CPU: a quiet machine's latency, estimated
            "less_wait_p99": _percentiles([c["seconds"] - c["qemu_wait_s"] for c in rows])["p99"],
            "kernel_cpu_p50": statistics.median(c["kernel_cpu_s"] for c in rows)}
    return table


def run_class(names: list[str], env: dict[str, str], tools: Path, args: argparse.Namespace, stop: threading.Event,
              seats: list[Seat]) -> dict:
    """One run with these students; ``seats`` is filled as they start, for the caller to clean up."""
    load_before = _load()
    seats.extend(Seat(Student(name, env, tools)) for name in names)
    started = time.monotonic()
    _in_parallel(seats, _first_cell)
    first_all = time.monotonic() - started
    broken = [s.first for s in seats if not s.first["ok"]]
    working_seats = [s for s in seats if s.first["ok"]]  # a student whose first cell failed is counted, not kept
    if not working_seats:
        raise SystemExit(f"no student got a VM: {broken[0]['errors']}")
    pids = [pid for seat in working_seats for pid in seat.pids()]
    with Watch(pids) as idle:
        stop.wait(args.idle)
    with Watch(pids) as working:
        until = time.monotonic() + args.duration
        _in_parallel(working_seats, lambda seat: _work(seat, until, args.think, args.seed + seats.index(seat), stop))
    lost = [seat.lost for seat in working_seats if seat.lost]
    present = [seat for seat in working_seats if not seat.lost and seat.state["pid"] in working.alive]
    if not present:
        raise SystemExit(f"every student was lost: {lost[0]}")
    memory = [{"qemu": _memory(seat.state["pid"]), "kernel": _memory(seat.state["kernel_pid"]),
               "guest": _guest_ram_mb(seat.state["pid"], int(env["WORKSHOP_VM_MEMORY"]))} for seat in present]
    cells = [c for seat in working_seats for c in seat.cells]
    table = _cell_table(cells)
    qemus = [seat.state["pid"] for seat in present]  # those that ran through both phases
    kernels = [seat.state["kernel_pid"] for seat in present]
    per_vm = {phase: round(sum(w.ours[pid] for pid in qemus) / len(qemus) / w.seconds, 3)
              for phase, w in (("idle", idle), ("working", working))}
    per_kernel = {phase: round(sum(w.ours[pid] for pid in kernels) / len(kernels) / w.seconds, 3)
                  for phase, w in (("idle", idle), ("working", working))}
    firsts = [s.first for s in working_seats]
    p99 = table.get("all", {}).get("p99")
    met = p99 is not None and p99 < TARGET_P99 and not broken and not lost
    return {
        "students": len(seats), "load_before": load_before, "load_after": _load(),
        "first_cell": {"median_s": statistics.median(f["seconds"] for f in firsts),
                       "max_s": max(f["seconds"] for f in firsts), "all_ready_s": round(first_all, 2),
                       "from_kernel_start_median_s": statistics.median(f["wall_s"] for f in firsts),
                       "restore_median_s": statistics.median(f["restore_s"] or 0 for f in firsts),
                       "vm_up_median_s": statistics.median(f["vm_up_s"] or 0 for f in firsts),
                       "failed": [f["errors"][0] if f["errors"] else "?" for f in broken]},
        "lost": lost, "cells": table, "every_cell": cells, "idle": idle.summary(), "working": working.summary(),
        "qemu_cpu_per_vm": per_vm, "kernel_cpu_per_student": per_kernel,
        "memory_mib": {
            "qemu_pss": round(statistics.mean(m["qemu"]["pss"] for m in memory)),
            "qemu_rss": round(statistics.mean(m["qemu"]["rss"] for m in memory)),
            "qemu_guest_ram_rss": round(statistics.mean(m["guest"] for m in memory)),
            "kernel_pss": round(statistics.mean(m["kernel"]["pss"] for m in memory)),
            "kernel_rss": round(statistics.mean(m["kernel"]["rss"] for m in memory))},
        "p99_under_1s": met,
    }


def close_seats(seats: list[Seat], wait: float = 60) -> None:
    """Each kernel shut down (its VM stops with it); what does not stop in time is killed by pid."""
    def close(seat: Seat) -> None:
        if not seat.busy and seat.student.proc.poll() is None:
            with contextlib.suppress(Exception):
                seat.student.close()

    closers = [threading.Thread(target=close, args=(seat,), daemon=True) for seat in seats]
    for t in closers:
        t.start()
    deadline = time.monotonic() + wait
    for t in closers:
        t.join(max(0.0, deadline - time.monotonic()))
    for seat in seats:
        uid = pwd.getpwnam(seat.student.name).pw_uid
        for pid in seat.pids():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{pid}").st_uid == uid:  # still the student's, not a pid used again
                    os.kill(pid, signal.SIGKILL)
    seats.clear()


def _print(result: dict, vm: dict, args: argparse.Namespace) -> None:
    n = result["students"]
    f, w, i = result["first_cell"], result["working"], result["idle"]
    print(f"\n== {n} students · {result['accel'].upper()} · VM {vm['memory_mb']} MB, {vm['cpus']} vCPUs · "
          f"think {args.think} s · {args.duration} s of work")
    print(f"load average before {result['load_before']}, after {result['load_after']}; while working: "
          f"mean {w['load_mean']}, max {w['load_max']}; host CPUs {w['host_cpu_busy']:.0%} busy "
          f"({w['ours_cpu_s']} CPU-s this benchmark, {w['others_cpu_s']} CPU-s other work)")
    print(f"first cell (VM restored + the kernel's SSH): median {f['median_s']:.2f} s, max {f['max_s']:.2f} s "
          f"(VM up: median {f['vm_up_median_s']:.2f} s, of which qemu restoring {f['restore_median_s']:.2f} s); "
          f"from the kernel's start: median {f['from_kernel_start_median_s']:.2f} s, all {f['all_ready_s']:.2f} s")
    for failure in f["failed"]:
        print(f"a student's first cell failed (left out of what follows): {failure}")
    for lost in result["lost"]:
        print(f"a student was lost while working (their cells so far are counted): {lost}")
    print(f"{'cells':10} {'n':>5} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6} {'failed':>6}  "
          f"{'kernel p50':>10} {'qemu CPU p50':>12} {'qemu wait p50/p99':>17} {'p99 less the wait':>17}")
    for kind, t in result["cells"].items():
        print(f"{kind:10} {t['n']:5} {t['p50']:6.2f} {t['p95']:6.2f} {t['p99']:6.2f} {t['max']:6.2f} "
              f"{t['failed']:6}  {t['kernel_p50']:10.2f} {t['qemu_cpu_p50']:12.2f} "
              f"{t['qemu_wait_p50']:8.2f}/{t['qemu_wait_p99']:<8.2f} {t['less_wait_p99']:17.2f}")
    q, k, m = result["qemu_cpu_per_vm"], result["kernel_cpu_per_student"], result["memory_mib"]
    print(f"CPU per VM (qemu, CPU-s per s): idle {q['idle']:.3f}, working {q['working']:.3f}; "
          f"per kernel: idle {k['idle']:.3f}, working {k['working']:.3f} (idle phase: load {i['load_mean']})")
    print(f"RAM per student (MiB): qemu PSS {m['qemu_pss']} (RSS {m['qemu_rss']}, of it the guest's RAM "
          f"{m['qemu_guest_ram_rss']}), kernel PSS {m['kernel_pss']} "
          f"(RSS {m['kernel_rss']})")
    verdict = "yes" if result["p99_under_1s"] else "no"
    target = f"; target ({TARGET_STUDENTS} students, p99 < 1 s): " + (
        ("met" if result["p99_under_1s"] else "missed") if n >= TARGET_STUDENTS else "needs 8 students")
    print(f"cell p99 under 1 s with {n} students: {verdict}{target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", default="2,4,8", help="student counts, run one after another (default 2,4,8)")
    parser.add_argument("--duration", type=float, default=120, help="seconds of work per count (default 120)")
    parser.add_argument("--think", type=float, default=5, help="mean seconds between a student's cells; 0: stress")
    parser.add_argument("--idle", type=float, default=20, help="seconds all sit idle before working (default 20)")
    parser.add_argument("--memory", type=int, default=1024, help="MB per VM, hub.json's memory_mb (default 1024)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hub-dir", type=Path, help="a hub's directory: its settings, kernelspec and VM cache")
    parser.add_argument("--users", help="with --hub-dir: the hub's users who work, comma-separated")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    counts = [int(n) for n in args.students.split(",")]
    if os.geteuid() != 0:
        raise SystemExit("run it as root: it runs kernels as the students (and adds them as users unless --hub-dir).")
    if users_cannot_run_python():
        raise SystemExit(users_cannot_run_python())
    if args.hub_dir and (not args.users or len(args.users.split(",")) < max(counts)):
        raise SystemExit(f"with --hub-dir, name at least {max(counts)} of the hub's users with --users a,b,...")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, _interrupted)
    seats: list[Seat] = []
    made_users: list[str] = []
    own_hub = None
    tools = student_tools(kernelspec=args.hub_dir is None)
    try:
        if args.hub_dir:
            hub_dir, names, jupyter_path = args.hub_dir, args.users.split(","), args.hub_dir / "share" / "jupyter"
        else:
            hub_dir = own_hub = Path(tempfile.mkdtemp(prefix="workshop-hubload-", dir="/var/tmp"))
            os.chmod(hub_dir, 0o755)
            print("the students' VM image and snapshot (once) ...", flush=True)
            built = hub_vm(hub_dir, {"memory_mb": args.memory, "per_student": 1, "at_once": 0})
            if built.returncode:
                raise SystemExit(f"workshop hub vm failed: {built.stderr[-2000:]}")
            names = made_users = add_users(max(counts), "wsload")
            jupyter_path = tools / "share" / "jupyter"
        env = student_env(hub_dir, jupyter_path)
        results = []
        for n in counts:
            print(f"{n} students ...", flush=True)
            try:
                result = run_class(names[:n], env, tools, args, stop, seats)
            except BaseException:
                stop.set()  # the students stop before their kernels do
                raise
            finally:
                close_seats(seats)
            result |= _about(hub_dir, args)
            results.append(result)
            _print(result, result["vm"], args)
        if args.json:
            args.json.write_text(json.dumps({"machine": _machine(), "results": results}, indent=2))
    except KeyboardInterrupt:
        print("interrupted: stopping the students' kernels and VMs", file=sys.stderr)
        stop.set()
        raise SystemExit(130) from None
    finally:
        stop.set()
        close_seats(seats, wait=30)
        remove_users(made_users)
        for path in (own_hub, tools):
            if path:
                shutil.rmtree(path, ignore_errors=True)


def _interrupted(*_) -> None:
    raise KeyboardInterrupt  # kill PID cleans up as Ctrl-C does


def _about(hub_dir: Path, args: argparse.Namespace) -> dict:
    from workshop.hub.config import vm_settings
    from workshop.settings import Settings
    from workshop.vm.machine import kvm_usable

    vm = vm_settings(hub_dir)
    settings = Settings()
    return {"accel": "kvm" if kvm_usable(settings)[0] else "tcg", "date": time.strftime("%Y-%m-%d %H:%M"),
            "vm": {"memory_mb": vm["memory_mb"], "cpus": settings.vm_cpus},
            "think_s": args.think, "duration_s": args.duration}


if __name__ == "__main__":
    main()
