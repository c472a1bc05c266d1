"""How long a workshop kernel takes to shut down with magics live, as Jupyter asks
it to: seconds from ``shutdown_request`` to its reply and to the process's exit
(jupyter_client sends SIGTERM to a kernel still running 2.5 s after the request).

    PYTHONPATH=. python bench/shutdown.py [--ssh] [--runs 3] [--cpu 6]

Each run starts a kernel (on this machine, or over a loopback sshd with ``--ssh``),
makes a named overlay snapshot, a named cgroup and a background job, then asks it to
shut down.  ``--cpu P`` runs this script, the kernel and the sshd in a cgroup held
to P % of one CPU, as a loaded machine would hold them.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager


def starve(percent: float) -> Path:
    """Move this process into a cgroup held to ``percent`` of one CPU (v2 or v1)."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    group = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/cpu") / f"workshop-bench-shutdown-{os.getpid()}"
    group.mkdir()
    quota = int(percent * 1000)  # of a 100 ms period
    if v2:
        (group / "cpu.max").write_text(f"{quota} 100000")
    else:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    (group / "cgroup.procs").write_text(str(os.getpid()))
    return group


def leave(group: Path) -> None:
    parent = group.parent
    for pid in (group / "cgroup.procs").read_text().split():
        try:
            (parent / "cgroup.procs").write_text(pid)
        except OSError:
            pass
    group.rmdir()


def one_run(env: dict, root: Path, index: int) -> dict:
    km = KernelManager(kernel_name="workshop")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    try:
        for code in (f"%rootfs {root}/{index}", f"%%overlay {root}/{index} --name bench{index}\ntouch /made",
                     f"%%cgroup --name workshop-bench-{os.getpid()}-{index} --memory 100M\ntrue",
                     "sleep 1000 &"):
            kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        process = km.provisioner.process
        msg = kc.session.msg("shutdown_request", {"restart": False})
        started = time.monotonic()
        kc.control_channel.send(msg)
        while kc.control_channel.get_msg(timeout=60)["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            pass
        replied = time.monotonic() - started
        process.wait(60)
        exited = time.monotonic() - started
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"reply_s": round(replied, 2), "exit_s": round(exited, 2), "status": process.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ssh", action="store_true", help="over a loopback sshd (tests/sshd.py), not locally")
    parser.add_argument("--cpu", type=float, help="percent of one CPU for this script, the kernel and the sshd")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="workshop-bench-shutdown-"))
    subprocess.run([sys.executable, "-m", "workshop", "kernel", "install", "--prefix", str(tmp)], check=True,
                   capture_output=True)
    os.environ["JUPYTER_PATH"] = str(tmp / "share" / "jupyter")
    group = starve(args.cpu) if args.cpu else None
    sshd = None
    target = "local"
    try:
        if args.ssh:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from sshd import start_sshd

            sshd = start_sshd()
            target = sshd.url
        env = dict(os.environ, WORKSHOP_TARGET=target, WORKSHOP_DATA_DIR=str(tmp / "data"))
        env.pop("JPY_SESSION_NAME", None)
        rows = []
        for i in range(args.runs):
            rows.append(one_run(env, tmp / "root", i))
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        if sshd is not None:
            sshd.stop()
        if group is not None:
            leave(group)
        subprocess.run(["rm", "-rf", str(tmp)])
    print(json.dumps({"target": "ssh" if args.ssh else "local", "cpu_percent": args.cpu, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
