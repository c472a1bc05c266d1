"""Benchmark: how long Tab takes on a `qemu:` VM target, over the Jupyter protocol.

A kernel on ``qemu:NAME`` (booted by its first cell), then, ``--rounds`` times:
a cell that makes a file, and right after it Tab on that file's name (the
cache is stale after a cell: the directory is read again over SFTP), Tab on the
same word again (from the cache), Tab where a command is written (the shell's
commands, fetched once), and Shift-Tab on ``ls`` (a question through the
shell: the round trip Tab used to make).  Each is the time from the request
sent to its reply in, median and worst.  JupyterLab drops a completion reply
slower than one second.

    WORKSHOP_VM_CACHE=/var/tmp/wsvm python bench/completion_vm.py [--rounds 20] [--name wsbenchtab] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import KernelHarness, clean_env  # noqa: E402


def _timed(ask, *args) -> tuple[float, dict]:
    started = time.monotonic()
    reply = ask(*args)
    return (time.monotonic() - started) * 1000, reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--name", default="wsbenchtab")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    prefix = Path(tempfile.mkdtemp(prefix="bench-tab-"))
    subprocess.run([sys.executable, "-m", "workshop", "kernel", "install", "--prefix", str(prefix)], check=True,
                   capture_output=True)
    env = clean_env(WORKSHOP_TARGET=f"qemu:{args.name}", JUPYTER_PATH=str(prefix / "share" / "jupyter"))
    kernel = KernelHarness(env)
    times: dict[str, list[float]] = {"after a cell": [], "again": [], "a command": [], "Shift-Tab (shell)": []}
    try:
        started = time.monotonic()
        first = kernel.run("mkdir -p /root/bench && cd /root/bench", timeout=900)
        assert first.status == "ok", first.stderr
        boot = time.monotonic() - started
        kernel.complete("ech")  # the commands, fetched once
        for i in range(args.rounds):
            assert kernel.run(f"touch file{i:03d}").status == "ok"
            word = f"file{i:03d}"
            ms, reply = _timed(kernel.complete, f"cat {word}")
            times["after a cell"].append(ms)
            assert reply["matches"] == [word], reply
            times["again"].append(_timed(kernel.complete, f"cat {word}")[0])
            ms, reply = _timed(kernel.complete, "ech")
            times["a command"].append(ms)
            assert "echo" in reply["matches"], reply
            times["Shift-Tab (shell)"].append(_timed(lambda: kernel.kc.inspect("ls", 2, reply=True, timeout=30))[0])
        kernel.run("cd / && rm -r /root/bench")
    finally:
        kernel.shutdown()
        subprocess.run([sys.executable, "-m", "workshop", "vm", "destroy", args.name], capture_output=True)
    result = {"first_cell_s": round(boot, 1), "rounds": args.rounds,
              "ms": {k: {"median": round(statistics.median(v), 1), "max": round(max(v), 1)} for k, v in times.items()}}
    print(f"first cell (VM boot): {result['first_cell_s']} s")
    for what, t in result["ms"].items():
        print(f"{what:20} median {t['median']:7.1f} ms   worst {t['max']:7.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
