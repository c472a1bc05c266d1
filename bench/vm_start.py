"""Benchmark: a fresh VM ready for its first cell, booted cold vs restored from the snapshot.

One run, side by side on this machine: ``--cold`` VMs booted from scratch
(``VM.up()``, as every rerun did before snapshots), then ``--restores`` fresh
VMs restored from the snapshot (``workshop.vm.clone.start_fresh``), one at a
time.  For each: the seconds until the VM is up (host key pinned, clock and
randomness set, for restores), then until a first command has run over a new
SSH connection, which is what a kernel's first cell does before its shell
starts.  The snapshot is saved first if there is none (timed on its own).

    WORKSHOP_VM_CACHE=/var/tmp/workshop-vm-cache python bench/vm_start.py [--cold 2] [--restores 5] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    with open("/proc/meminfo") as f:
        mem_gb = int(f.readline().split()[1]) / 2**20
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "kernel": platform.release(),
            "python": platform.python_version()}


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds qemu has used, seconds its busiest thread waited for a CPU)."""
    from workshop.vm.machine import _cpu_wait_seconds

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), _cpu_wait_seconds(pid) or 0.0


def _first_command(vm) -> dict:
    """A new SSH connection and `true` on it; with qemu's CPU time and CPU wait meanwhile."""
    from workshop.shell.ssh import Endpoint, SSHConnection

    state = vm.state()
    cpu_before, wait_before = _cpu(state["pid"])
    started = time.monotonic()
    conn = SSHConnection(Endpoint("127.0.0.1", state["port"], "root", state["private_key"]), pin="strict")
    try:
        assert conn.exec("true").ok
    finally:
        conn.close()
    took = time.monotonic() - started
    cpu_after, wait_after = _cpu(state["pid"])
    return {"first_command_s": round(took, 2), "first_command_qemu_cpu_s": round(cpu_after - cpu_before, 2),
            "first_command_cpu_wait_s": round(wait_after - wait_before, 2)}


def _cold(n: int) -> dict:
    from workshop.vm import VM

    vm = VM(f"benchcold-{n}")
    started = time.monotonic()
    try:
        vm.up()
        up = time.monotonic() - started
        first = _first_command(vm)
        return {"up_s": round(up, 2), "up_cpu_wait_s": vm.state().get("boot_cpu_wait_seconds"), **first,
                "ready_s": round(up + first["first_command_s"], 2)}
    finally:
        vm.destroy()


def _restore() -> dict:
    from workshop.vm.clone import start_fresh

    started = time.monotonic()
    vm = start_fresh("benchfresh")
    try:
        up = time.monotonic() - started
        state = vm.state()
        up_cpu, up_wait = _cpu(state["pid"])
        first = _first_command(vm)
        return {"up_s": round(up, 2), "restore_s": state.get("restore_seconds"),
                "personalise_s": round(state["boot_seconds"] - state["restore_seconds"], 2)
                if "restore_seconds" in state else None,
                "up_qemu_cpu_s": round(up_cpu, 2), "up_cpu_wait_s": round(up_wait, 2), **first,
                "ready_s": round(up + first["first_command_s"], 2), "snapshot": bool(state.get("snapshot"))}
    finally:
        vm.destroy()


def _summary(rows: list[dict], field: str) -> str:
    values = [r[field] for r in rows if r.get(field) is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", type=int, default=2, help="cold boots (default 2)")
    parser.add_argument("--restores", type=int, default=5, help="restores from the snapshot (default 5)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    own_data = None
    if "WORKSHOP_DATA_DIR" not in os.environ:  # known hosts and VM dirs of this run only
        own_data = os.environ["WORKSHOP_DATA_DIR"] = tempfile.mkdtemp(prefix="workshop-bench-vm-")
    try:
        _run(args)
    finally:
        if own_data:
            shutil.rmtree(own_data, ignore_errors=True)


def _run(args: argparse.Namespace) -> None:
    from workshop.settings import Settings
    from workshop.vm import build_image
    from workshop.vm.machine import kvm_usable
    from workshop.vm.snapshot import ensure_snapshot, qemu_version

    settings = Settings()
    image, _ = build_image(print)
    accel = "kvm" if kvm_usable()[0] else "tcg"
    result: dict = {"machine": _machine(), "qemu": qemu_version(), "accel": accel,
                    "vm": {"memory_mb": settings.vm_memory, "cpus": settings.vm_cpus},
                    "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": _load()}
    started = time.monotonic()
    snap = ensure_snapshot(image, accel, settings.vm_memory, settings.vm_cpus, print)
    result["snapshot"] = {"ensure_s": round(time.monotonic() - started, 1), **snap.meta}
    result["accel"] = snap.meta["accel"]  # (KVM may have failed while saving it)
    result["cold"] = [_cold(n) for n in range(args.cold)]
    result["restored"] = [_restore() for _ in range(args.restores)]
    result["load_after"] = _load()
    print(json.dumps(result, indent=2))
    print(f"\n{'':34} {'cold boot':>28} {'restored from snapshot':>28}")
    for field, label in (("up_s", "VM up (s)"), ("restore_s", "  of which qemu loading the state"),
                         ("personalise_s", "  of which key, clock, randomness"),
                         ("first_command_s", "then first command over SSH (s)"),
                         ("first_command_qemu_cpu_s", "  qemu CPU time meanwhile"),
                         ("first_command_cpu_wait_s", "  qemu waiting for a CPU meanwhile"),
                         ("ready_s", "ready for a first cell (s)")):
        print(f"{label:34} {_summary(result['cold'], field):>28} {_summary(result['restored'], field):>28}")
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
