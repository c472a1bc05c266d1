"""The shell session alone, without Jupyter: where a cell's time goes.

Runs workshop's PersistentShell in this process, on this machine and over the
loopback sshd, and reports the round trip of a `true` cell and the throughput
of a cell that prints N MB (output discarded).  Compared with bench/kernels.py,
the difference is what the kernel and the messaging protocol add.

    bench/.venv/bin/python bench/shell.py --cells 500 --size 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("WORKSHOP_DATA_DIR", tempfile.mkdtemp(prefix="workshop-bench-"))

from sshd import start_sshd  # noqa: E402

from workshop.shell.channels import LocalChannel  # noqa: E402
from workshop.shell.persistent import PersistentShell  # noqa: E402
from workshop.targets import parse_target  # noqa: E402

MB = 1_000_000


def measure(label: str, factory, cells: int, size: int) -> str:
    shell = PersistentShell(factory)
    shell.start()
    received = 0

    def count(stream: str, data: bytes) -> None:
        nonlocal received
        received += len(data)

    try:
        for _ in range(50):
            shell.run("true", on_output=count)
        times = []
        for _ in range(cells):
            start = time.perf_counter()
            shell.run("true", on_output=count)
            times.append(time.perf_counter() - start)
        received = 0
        start = time.perf_counter()
        outcome = shell.run(f"head -c {size * MB} /dev/zero | tr '\\0' x | fold -w 100", on_output=count)
        seconds = time.perf_counter() - start
    finally:
        shell.close()
    p50 = statistics.median(times) * 1000
    p90 = statistics.quantiles(times, n=10)[8] * 1000
    ok = "" if outcome.status == 0 else f" (exit status {outcome.status})"
    return f"| {label} | {p50:.2f} | {p90:.2f} | {received / MB / seconds:.1f}{ok} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--size", type=int, default=100, help="MB printed by the stream cell")
    args = parser.parse_args()
    print(f"| shell session | `true` p50 ms | p90 ms | {args.size} MB: MB/s |\n|---|---|---|---|")
    print(measure("local", LocalChannel, args.cells, args.size), flush=True)
    sshd = start_sshd()
    try:
        conn = parse_target(sshd.url).open()
        print(measure("ssh (paramiko, loopback sshd)", conn.channel, args.cells, args.size), flush=True)
        conn.close()
    finally:
        sshd.stop()


if __name__ == "__main__":
    main()
