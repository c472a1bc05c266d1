"""Kernel start to the first kernel_info_reply, the Workshop kernel beside ipykernel's Python kernel.

Each kernel is started the way JupyterLab starts one for an open notebook: by
``jupyter_client``'s ``KernelManager`` from its installed kernelspec, in the
notebook's folder, with ``JPY_SESSION_NAME`` set to the notebook's path.  The
time runs from ``start_kernel()`` until a client has the kernel's answer to
``kernel_info_request`` (what a frontend waits for before it shows Idle).
The two kernels take turns, so that both see the same load.  Both write and
read compiled bytecode in one private cache (``PYTHONPYCACHEPREFIX``), filled
by a warm-up start, as an installed package has its ``.pyc`` files: a
development environment with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise
compile the workshop package from source at every start.

    /opt/workshop/bin/python bench/startup.py --rounds 10
    git archive COMMIT workshop | tar -x -C /tmp/old   # then, to compare with that code:
    /opt/workshop/bin/python bench/startup.py --rounds 10 --also /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
KERNELS = {"workshop": "Workshop (bash)", "python3": "ipykernel Python 3"}


# The workshop kernel of another tree: its package first on sys.path, before an editable install's finder.
TREE_KERNEL = """import sys
sys.path.insert(0, {tree!r})
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
from workshop.kernel import main
main()
"""


def tree_kernelspec(tree: Path, prefix: Path) -> str:
    """A kernelspec in ``prefix`` for the workshop kernel of ``tree``; its name."""
    spec = prefix / "kernels" / "workshop-tree"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", TREE_KERNEL.format(tree=str(tree)), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": f"Workshop ({tree})",
                                                  "language": "bash"}))
    return "workshop-tree"


def start_once(kernel: str, notebook: Path, pycache: str) -> float:
    """Seconds from start_kernel() to the first kernel_info_reply."""
    env = {**os.environ, "JPY_SESSION_NAME": str(notebook), "PYTHONPYCACHEPREFIX": pycache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    km = KernelManager(kernel_name=kernel)
    started = time.perf_counter()
    km.start_kernel(env=env, cwd=str(notebook.parent))
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=60)  # sends kernel_info_request until it is answered
        return time.perf_counter() - started
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="starts of each kernel (after one warm-up each)")
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "00-demo.ipynb")
    parser.add_argument("--also", type=Path, metavar="TREE",
                        help="also start the workshop kernel of TREE (a folder holding another version's workshop/)")
    args = parser.parse_args()
    notebook = args.notebook.resolve()
    kernels = dict(KERNELS)
    with tempfile.TemporaryDirectory(prefix="workshop-bench-") as tmp:
        pycache = str(Path(tmp) / "pycache")
        if args.also:
            os.environ["JUPYTER_PATH"] = tmp + os.pathsep + os.environ.get("JUPYTER_PATH", "")
            kernels[tree_kernelspec(args.also.resolve(), Path(tmp))] = f"Workshop (bash) of {args.also}"
        times: dict[str, list[float]] = {k: [] for k in kernels}
        for kernel in kernels:
            start_once(kernel, notebook, pycache)  # warm-up: file system caches, .pyc files
        for _ in range(args.rounds):
            for kernel in kernels:
                times[kernel].append(start_once(kernel, notebook, pycache))
    print(f"{os.cpu_count()} cores ({cpu_model()}), load average {os.getloadavg()[0]:.2f}, "
          f"JPY_SESSION_NAME={notebook}, {args.rounds} starts each\n")
    print("| kernel | median s | min s | max s |")
    print("|---|---|---|---|")
    for kernel, label in kernels.items():
        t = times[kernel]
        print(f"| {label} | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} |")
    ratio = statistics.median(times["workshop"]) / statistics.median(times["python3"])
    print(f"\nworkshop / python3 (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
