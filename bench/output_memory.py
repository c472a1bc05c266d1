"""The workshop kernel's memory while a cell prints a lot with the output cap
off (``WORKSHOP_OUTPUT_LIMIT=0``), read by an ordinary jupyter_client client
as a frontend would: peak RSS during each cell and RSS after it.

    PYTHONPATH=. python bench/output_memory.py --sizes 100,400

The kernel runs the ``workshop`` package this Python imports (PYTHONPATH
chooses a checkout), from a kernelspec in a private temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

MB = 1_000_000
CODE = "head -c {n} /dev/zero | tr '\\0' 'x' | fold -w 100"


def status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def run(kc, code: str, timeout: float, pause: float = 0.0) -> int:
    """Execute ``code``; the characters of stream output received (``pause``:
    seconds spent on each stream message, as a slow frontend would)."""
    msg_id = kc.execute(code)
    received, idle, reply = 0, False, False
    deadline = time.monotonic() + timeout
    while not (idle and reply):
        if time.monotonic() > deadline:
            raise TimeoutError(code)
        if not reply:
            try:
                reply = kc.shell_channel.get_msg(timeout=0.01)["parent_header"].get("msg_id") == msg_id
            except queue.Empty:
                pass
        try:
            msg = kc.iopub_channel.get_msg(timeout=0.05)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            received += len(msg["content"]["text"])
            if pause:
                time.sleep(pause)
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    return received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,400", help="MB per cell, comma-separated (default 100,400)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--ssh", action="store_true", help="over a loopback sshd (tests/sshd.py), not locally")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds the client spends on each stream message (a slow frontend)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="workshop-bench-memory-"))
    subprocess.run([sys.executable, "-m", "workshop", "kernel", "install", "--prefix", str(tmp)], check=True,
                   capture_output=True)
    os.environ["JUPYTER_PATH"] = str(tmp / "share" / "jupyter")
    sshd = None
    target = "local"
    if args.ssh:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from sshd import start_sshd

        sshd = start_sshd()
        target = sshd.url
    env = dict(os.environ, WORKSHOP_OUTPUT_LIMIT="0", WORKSHOP_TARGET=target, WORKSHOP_DATA_DIR=str(tmp / "data"))
    env.pop("JPY_SESSION_NAME", None)
    km = KernelManager(kernel_name="workshop")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    rows = []
    try:
        kc.wait_for_ready(timeout=60)
        pid = km.provisioner.process.pid
        run(kc, "true", 60)
        idle = status(pid, "VmRSS")
        for size in (int(s) for s in args.sizes.split(",")):
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from here
            started = time.monotonic()
            received = run(kc, CODE.format(n=size * MB), args.timeout, args.pause)
            rows.append({"mb": size, "target": "ssh" if args.ssh else "local", "pause": args.pause, "seconds": round(time.monotonic() - started, 1),
                         "received_mb": round(received / MB, 1),
                         "peak_rss_mib": round(status(pid, "VmHWM") / 1024),
                         "rss_after_mib": round(status(pid, "VmRSS") / 1024)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        if sshd is not None:
            sshd.stop()
        subprocess.run(["rm", "-rf", str(tmp)])
    print(json.dumps({"idle_rss_mib": round(idle / 1024), "cells": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
