"""Bash kernels side by side, over the real Jupyter messaging protocol.

For each kernel: the round trip of a `true` cell (execute_request sent until
both execute_reply and the idle status are in), and the throughput of a cell
that prints 10 MB and 100 MB of text, with the kernel process's peak RSS.

    bench/setup.sh                                  # once: bench/.venv
    bench/.venv/bin/python bench/kernels.py --cells 500

Kernelspecs go to a private temporary directory; nothing is installed for the
user or the system.  A kernel that cannot be installed or started is reported
as unavailable, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from sshd import Sshd, start_sshd  # noqa: E402

MB = 1_000_000
STREAM_CODE = "head -c {n} /dev/zero | tr '\\0' 'x' | fold -w 100"


# ---- the kernels under test ------------------------------------------------
@dataclass
class Candidate:
    label: str
    kernel: str  # kernelspec name
    module: str | None = None  # must be importable for the kernel to run
    env: dict[str, str] = field(default_factory=dict)
    login: str | None = None  # a first cell that must succeed (sshkernel's %login)
    streams: bool = True
    needs_sshd: bool = False


def candidates() -> list[Candidate]:
    unlimited = {"WORKSHOP_OUTPUT_LIMIT": "0"}
    return [
        Candidate("ipykernel floor (no-op kernel)", "bench-null", streams=False),
        Candidate("workshop local", "workshop", "workshop", {"WORKSHOP_TARGET": "local"}),
        Candidate(
            "workshop local, unlimited", "workshop", "workshop", {"WORKSHOP_TARGET": "local", **unlimited}
        ),
        Candidate("workshop ssh", "workshop", "workshop", {"WORKSHOP_TARGET": "@sshd"}, needs_sshd=True),
        Candidate(
            "workshop ssh, unlimited",
            "workshop",
            "workshop",
            {"WORKSHOP_TARGET": "@sshd", **unlimited},
            needs_sshd=True,
        ),
        Candidate("bash_kernel", "bench-bash", "bash_kernel"),
        Candidate("sshkernel", "bench-ssh", "sshkernel", login="%login bench", needs_sshd=True),
    ]


def install_kernelspecs(prefix: Path) -> Path:
    """Kernelspecs for this Python in ``prefix``; returns the kernels directory."""
    kernels = prefix / "share" / "jupyter" / "kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    specs = {
        "bench-null": {
            "argv": [py, str(HERE / "nullkernel.py"), "-f", "{connection_file}"],
            "language": "none",
        },
        # as bash_kernel's and sshkernel's own installers write them
        "bench-bash": {"argv": [py, "-m", "bash_kernel", "-f", "{connection_file}"], "env": {"PS1": "$"}},
        "bench-ssh": {"argv": [py, "-m", "sshkernel", "-f", "{connection_file}"], "env": {"PS1": "$"}},
    }
    for name, spec in specs.items():
        (kernels / name).mkdir(exist_ok=True)
        spec = {"display_name": name, "language": "bash", **spec}
        (kernels / name / "kernel.json").write_text(json.dumps(spec, indent=1))
    if importlib.util.find_spec("workshop"):
        subprocess.run(
            [py, "-m", "workshop", "kernel", "install", "--prefix", str(prefix)],
            check=True,
            capture_output=True,
        )
    return kernels


def ssh_home(home: Path, sshd: Sshd) -> None:
    """A private HOME whose ~/.ssh/config names the loopback sshd as `bench`."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    (ssh / "config").write_text(
        f"Host bench\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n  IdentityFile {sshd.key}\n"
    )
    (ssh / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_pub}")
    os.chmod(ssh / "config", 0o600)


# ---- a client that reads the sockets directly --------------------------------
@dataclass
class CellRun:
    seconds: float
    status: str
    stdout_chars: int = 0
    stderr_chars: int = 0
    head: str = ""  # the first few hundred characters of output, for error messages


class Client:
    """Sends execute_request and blocks in zmq.Poller on shell and iopub: no sleeps."""

    def __init__(self, km: KernelManager):
        self.kc = km.client()
        # A SUB socket drops messages past its high-water mark (1000 by default);
        # kernels that send one message per line would lose output.
        self.kc.context.setsockopt(zmq.RCVHWM, 0)
        self.kc.start_channels(stdin=False, hb=False)
        self.kc.wait_for_ready(timeout=60)
        self.session = self.kc.session
        self.shell = self.kc.shell_channel.socket
        self.iopub = self.kc.iopub_channel.socket
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def run(self, code: str, timeout: float = 900) -> CellRun:
        start = time.perf_counter()
        msg_id = self.kc.execute(code)
        deadline = start + timeout
        status = None
        idle = False
        counts = {"stdout": 0, "stderr": 0}
        head: list[str] = []
        while status is None or not idle:
            left = deadline - time.perf_counter()
            events = self.poller.poll(max(int(left * 1000), 0)) if left > 0 else []
            if not events:
                raise TimeoutError(f"no answer to {code[:40]!r} within {timeout:g} s")
            for sock, _ in events:
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    _, frames = self.session.feed_identities(frames, copy=False)
                    msg = self.session.deserialize(frames, content=True, copy=False)
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    kind, content = msg["msg_type"], msg["content"]
                    if sock is self.shell:
                        status = content["status"]
                        if status == "error":
                            head.append(f"{content.get('ename')}: {content.get('evalue')}")
                    elif kind == "status":
                        idle = content["execution_state"] == "idle"
                    elif kind == "stream":
                        counts[content["name"]] += len(content["text"])
                        if sum(map(len, head)) < 400:
                            head.append(content["text"][:400])
        return CellRun(
            time.perf_counter() - start, status, counts["stdout"], counts["stderr"], "".join(head)[:400]
        )

    def close(self) -> None:
        self.kc.stop_channels()


# ---- measurements ------------------------------------------------------------
@dataclass
class Stream:
    produced: int  # bytes the cell's command wrote
    received: int  # characters of stream text that reached the client
    seconds: float
    peak_rss_kib: int | None

    @property
    def mb_per_s(self) -> float:
        return self.produced / MB / self.seconds


@dataclass
class Row:
    label: str
    error: str | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    idle_rss_kib: int | None = None
    streams: dict[int, Stream] = field(default_factory=dict)


def proc_status(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: echo 5 > /proc/PID/clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def produced_bytes(n: int) -> int:
    out = subprocess.run(["sh", "-c", STREAM_CODE.format(n=n) + " | wc -c"], capture_output=True, text=True)
    return int(out.stdout)


def measure(cand: Candidate, ksm: KernelSpecManager, env: dict[str, str], args) -> Row:
    row = Row(cand.label)
    km = KernelManager(kernel_name=cand.kernel, kernel_spec_manager=ksm, transport=args.transport)
    if args.transport == "ipc":
        km.ip = str(Path(env["WORKSHOP_DATA_DIR"]).parent / "kernel-ipc")  # socket files, not in the cwd
    client = None
    try:
        km.start_kernel(env=env)
        pid = km.provisioner.process.pid
        client = Client(km)
        if cand.login:
            run = client.run(cand.login, timeout=60)
            if run.status != "ok" or "rror" in run.head:
                raise RuntimeError(f"{cand.login!r} failed: {run.head.strip()}")
        for _ in range(args.warmup):
            run = client.run("true", timeout=60)
            if run.status != "ok":
                raise RuntimeError(f"`true` gave status {run.status}: {run.head.strip()}")
        times = [client.run("true", timeout=60).seconds for _ in range(args.cells)]
        q = statistics.quantiles(times, n=10)
        row.p50_ms, row.p90_ms = statistics.median(times) * 1000, q[8] * 1000
        row.idle_rss_kib = proc_status(pid, "VmRSS")
        if cand.streams:
            for size in args.sizes:
                n = size * MB
                reset = reset_peak_rss(pid)
                run = client.run(STREAM_CODE.format(n=n), timeout=args.stream_timeout)
                if run.status != "ok":
                    raise RuntimeError(f"the {size} MB cell gave status {run.status}: {run.head.strip()}")
                peak = proc_status(pid, "VmHWM") if reset else None
                row.streams[size] = Stream(produced_bytes(n), run.stdout_chars, run.seconds, peak)
                print(f"  {cand.label}: {size} MB in {run.seconds:.2f} s", file=sys.stderr)
    except Exception as exc:  # a peer that does not work is a row, not a crash
        row.error = f"{type(exc).__name__}: {exc}".strip()[:300]
    finally:
        if client is not None:
            client.close()
        with contextlib.suppress(Exception):
            km.shutdown_kernel(now=False)
    return row


def git_commit() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" (workshop/ modified)" if git("status", "--porcelain", "--", "workshop") else "")


# ---- the table --------------------------------------------------------------
def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f}"


def table(rows: list[Row], sizes: list[int]) -> str:
    head = ["kernel", "`true` p50 ms", "p90 ms", "idle RSS MiB"]
    for s in sizes:
        head += [f"{s} MB: MB/s", "shown MB", "peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.error:
            cells = [r.label, f"unavailable: {r.error}"] + [""] * (len(head) - 2)
        else:
            cells = [r.label, fmt(r.p50_ms, ".2f"), fmt(r.p90_ms, ".2f"), mib(r.idle_rss_kib)]
            for s in sizes:
                st = r.streams.get(s)
                if st is None:
                    cells += ["–", "–", "–"]
                else:
                    cells += [f"{st.mb_per_s:.1f}", f"{st.received / MB:.1f}", mib(st.peak_rss_kib)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=500, help="timed `true` cells per kernel (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed cells first (default 50)")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 100],
        help="stream cell sizes in MB, comma-separated (default 10,100)",
    )
    parser.add_argument("--stream-timeout", type=float, default=900, help="seconds per stream cell")
    parser.add_argument(
        "--transport", choices=["tcp", "ipc"], default="tcp", help="ZeroMQ transport (default tcp)"
    )
    parser.add_argument("--only", help="run only kernels whose label contains one of these, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    chosen = candidates()
    if args.only:
        words = args.only.split(",")
        chosen = [c for c in chosen if any(w in c.label for w in words)]
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    tmp = Path(tempfile.mkdtemp(prefix="workshop-bench-"))
    sshd: Sshd | None = None
    sshd_error = None
    rows: list[Row] = []
    try:
        ksm = KernelSpecManager(kernel_dirs=[str(install_kernelspecs(tmp / "prefix"))])
        if any(c.needs_sshd for c in chosen):
            try:
                sshd = start_sshd()
                ssh_home(tmp / "home", sshd)
            except Exception as exc:
                sshd_error = f"no loopback sshd: {exc}"
        for cand in chosen:
            print(f"{cand.label} ...", file=sys.stderr)
            if cand.module and importlib.util.find_spec(cand.module) is None:
                rows.append(
                    Row(cand.label, error=f"{cand.module} is not installed here (run bench/setup.sh)")
                )
                continue
            if cand.needs_sshd and sshd is None:
                rows.append(Row(cand.label, error=sshd_error))
                continue
            env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
            env["WORKSHOP_DATA_DIR"] = str(tmp / "data")
            env.update(cand.env)
            if env.get("WORKSHOP_TARGET") == "@sshd":
                env["WORKSHOP_TARGET"] = sshd.url
            if cand.kernel == "bench-ssh":
                env["HOME"] = str(tmp / "home")
            rows.append(measure(cand, ksm, env, args))
    finally:
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{args.cells} timed `true` cells after {args.warmup} warm-up cells; MB = 10^6 bytes;"
        " MB/s = bytes the cell printed / seconds from execute_request to idle;"
        " shown MB = stream text the client received."
    )
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"workshop at commit {git_commit()}")
    print(f"load average (1, 5, 15 min) before: {' '.join(load_before)}; after: {' '.join(load_after)}\n")
    print(table(rows, args.sizes))
    if args.json:
        args.json.write_text(
            json.dumps(
                [r.__dict__ | {"streams": {k: v.__dict__ for k, v in r.streams.items()}} for r in rows],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
