"""%%cgroup [--memory 100M] [--swap 0] [--pids 10] [--cpu-weight N] [--name N]
[--v1 | --v2] — run the body in a new cgroup; record what happened in it.

cgroup v2 (the unified hierarchy) and v1 (a hierarchy per controller) are both
handled; on a machine that has both, the version whose hierarchy holds the
controllers the limits need is chosen, v2 first (``--v1``/``--v2`` choose).
On v2 the cgroup is made at the root of the hierarchy (a cgroup with processes
cannot pass controllers to its children); on v1 under the shell's own cgroup
in each hierarchy.  The body runs in a subshell that first moves itself into
the cgroup.  After the cell the record's ``cgroup`` entry holds the peak
memory, the OOM kills and how often the pids limit was hit, and the cgroup is
removed (with ``--name`` it stays for later cells until %cleanup).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

from ..errors import MagicError
from . import Magic, arguments, register
from ._shared import q, safe_name, token
from .context import CellContext

STATS = ("memory", "pids")  # controllers joined for the record even without limits
_SIZE = re.compile(r"^(\d+)([KMGT]?)(i?B)?$", re.I)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"takes a size such as 100M, 1G or 65536, not {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _bounded(low: int, high: int | None = None):
    def number(text: str) -> int:
        if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
            span = f"from {low} to {high}" if high else "positive"
            raise argparse.ArgumentTypeError(f"takes a {'number ' + span if high else span + ' number'}, not {text!r}")
        return int(text)
    return number


ARGS = arguments("cgroup", cell=True)
ARGS.add_argument("--memory", type=size, metavar="100M",
                  help="the memory limit (K, M, G, T suffixes); above it the kernel reclaims, then OOM-kills")
ARGS.add_argument("--swap", type=size, metavar="0", help="the swap limit (0: no swap, so the memory limit is hard)")
ARGS.add_argument("--pids", type=_bounded(1), metavar="10",
                  help="at most this many processes and threads: fork fails beyond it")
ARGS.add_argument("--cpu-weight", type=_bounded(1, 10000), metavar="N",
                  help="the CPU share against other cgroups, 1 to 10000 (100 is the default weight)")
ARGS.add_argument("--name", type=safe_name, metavar="N", help="keep the cgroup under this name until %cleanup")
_VERSION = ARGS.add_mutually_exclusive_group()
_VERSION.add_argument("--v1", action="store_true", help="use cgroup v1 (a hierarchy per controller)")
_VERSION.add_argument("--v2", action="store_true", help="use cgroup v2 (the unified hierarchy)")


@dataclass
class Hierarchies:
    v2: str | None = None
    v2_controllers: set[str] = field(default_factory=set)
    v1: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    own: dict[str, str] = field(default_factory=dict)  # controller (or "" for v2) -> the shell's cgroup


def detect(ctx: CellContext) -> Hierarchies:
    script = """
while read -r dev mnt type opts rest; do
  case "$type" in
    cgroup2) echo "v2 $mnt $(cat "$mnt/cgroup.controllers" 2>/dev/null)";;
    cgroup) echo "v1 $mnt $opts";;
  esac
done < /proc/self/mounts
sed 's/^/own /' /proc/self/cgroup
"""
    found = Hierarchies()
    for line in ctx.run_script(script, "%%cgroup: could not look at the cgroup hierarchies").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "v2" and found.v2 is None:
            mnt, _, controllers = rest.partition(" ")
            found.v2 = mnt
            found.v2_controllers = set(controllers.split())
        elif kind == "v1":
            mnt, _, opts = rest.partition(" ")
            for opt in opts.split(","):
                if opt in ("memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "blkio", "devices"):
                    found.v1.setdefault(opt, mnt)
        elif kind == "own":
            _, _, rest = rest.partition(":")
            controllers, _, path = rest.partition(":")
            for controller in controllers.split(",") if controllers else [""]:
                found.own[controller] = path
    return found


def choose(found: Hierarchies, needed: set[str], version: int | None) -> int:
    def missing(v: int) -> set[str]:
        if v == 2:
            return needed - found.v2_controllers if found.v2 else needed | {"(no cgroup2 mount)"}
        return needed - set(found.v1) if found.v1 else needed | {"(no cgroup v1 mount)"}

    if version is not None:
        lack = missing(version)
        if lack:
            where = ""
            if version == 2 and found.v2 and lack & set(found.v1):
                where = " (bound to the v1 hierarchies; use --v1)"
            raise MagicError(
                f"%%cgroup --v{version}: cgroup v{version} has no {', '.join(sorted(lack))} controller{where}"
            )
        return version
    usable = [v for v in (2, 1) if not missing(v)]
    if not usable:
        raise MagicError(
            "%%cgroup: no cgroup hierarchy has the controllers needed: " + ", ".join(sorted(needed))
        )

    # Prefer the version that can also report memory and pids.
    def stats(v: int) -> int:
        have = found.v2_controllers if v == 2 else set(found.v1)
        return len(set(STATS) & have)

    return max(usable, key=lambda v: (stats(v), v))


@dataclass
class Plan:
    """Where the cgroup goes and the shell code that makes it with its limits."""

    version: int
    where: dict[str, str]  # controller (or "" for v2 without one) -> cgroup directory
    setup: list[str]

    @property
    def dirs(self) -> list[str]:
        return list(dict.fromkeys(self.where.values()))


def _needed(args: argparse.Namespace) -> set[str]:
    needed = set()
    if args.memory is not None or args.swap is not None:
        needed.add("memory")
    if args.pids is not None:
        needed.add("pids")
    if args.cpu_weight is not None:
        needed.add("cpu")
    return needed


def _plan_v2(found: Hierarchies, needed: set[str], name: str, args: argparse.Namespace) -> Plan:
    assert found.v2 is not None
    controllers = sorted((needed | set(STATS)) & found.v2_controllers)
    path = f"{found.v2}/{name}"
    control = q(found.v2 + "/cgroup.subtree_control")
    d = q(path)
    setup = [
        f'for c in {" ".join(controllers)}; do grep -qw "$c" {control} || '
        f'echo "+$c" > {control} || exit 1; done',
        f"mkdir -p {d}",
    ]
    for value, file in ((args.memory, "memory.max"), (args.swap, "memory.swap.max"), (args.pids, "pids.max"),
                        (args.cpu_weight, "cpu.weight")):
        if value is not None:
            setup.append(f"echo {value} > {d}/{file}")
    return Plan(2, {c: path for c in controllers} or {"": path}, setup)


def _plan_v1(found: Hierarchies, needed: set[str], name: str, args: argparse.Namespace) -> Plan:
    controllers = sorted(needed | (set(STATS) & set(found.v1))) or [sorted(found.v1)[0]]
    where = {c: found.v1[c] + found.own.get(c, "/").rstrip("/") + "/" + name for c in controllers}
    setup = [f"mkdir -p {q(d)}" for d in dict.fromkeys(where.values())]
    memory, swap = args.memory, args.swap
    if memory is not None:
        setup.append(f"echo {memory} > {q(where['memory'])}/memory.limit_in_bytes")
    if swap is not None:
        if memory is None:
            raise MAGIC.usage_error("on cgroup v1, --swap needs --memory (it limits memory + swap)")
        m, total = q(where["memory"]), memory + swap
        setup.append(
            f"if [ -e {m}/memory.memsw.limit_in_bytes ]; then "
            f"echo {total} > {m}/memory.memsw.limit_in_bytes || "
            f"{{ echo {total} > {m}/memory.memsw.limit_in_bytes && "
            f"echo {memory} > {m}/memory.limit_in_bytes; }}; "
            "else echo 'workshop: no swap accounting on this kernel (swapaccount=1);"
            " --swap not applied' >&2; fi"
        )
    if args.pids is not None:
        setup.append(f"echo {args.pids} > {q(where['pids'])}/pids.max")
    if args.cpu_weight is not None:
        shares = max(2, args.cpu_weight * 1024 // 100)
        setup.append(f"echo {shares} > {q(where['cpu'])}/cpu.shares")
    return Plan(1, where, setup)


def run(ctx: CellContext, args: argparse.Namespace, body: str) -> str:
    needed = _needed(args)
    found = detect(ctx)
    version = choose(found, needed, 1 if args.v1 else 2 if args.v2 else None)
    cg_name = args.name or f"workshop-{token()}"
    plan = (_plan_v2 if version == 2 else _plan_v1)(found, needed, cg_name, args)
    remove = _remove_code(plan.dirs, version)
    key = f"cgroup {cg_name} (v{version})"
    ctx.register_cleanup(key, remove)
    try:
        ctx.run_script("set -e\n" + "\n".join(plan.setup), f"%%cgroup: could not make the cgroup {cg_name}")
    except MagicError:
        if ctx.run_hidden(remove).status == 0:
            ctx.forget_cleanup(key)
        raise
    limits = {"memory": args.memory, "swap": args.swap, "pids": args.pids, "cpu_weight": args.cpu_weight}

    def after(ctx: CellContext, outcome) -> None:
        try:
            _report(ctx, version, cg_name, plan.where, args.name is not None, limits)
        finally:
            if args.name is None:
                if ctx.run_hidden(remove, timeout=30).status == 0:
                    ctx.forget_cleanup(key)
                else:
                    ctx.notice(f"could not remove the cgroup {cg_name} yet; %cleanup retries")

    ctx.after(after)
    procs = " ".join(q(f"{d}/cgroup.procs") for d in plan.dirs)
    inner = f"exec {body}" if ctx.stack.get("command") == body else f"eval {q(body)}"
    enter = (
        f"for __ws_f in {procs}; do sh -c 'echo $PPID' > \"$__ws_f\" || "
        f"{{ echo 'workshop: could not enter the cgroup {cg_name}' >&2; exit 125; }}; done"
    )
    ctx.stack.pop("command", None)
    return f"( {enter}\n{inner}\n)"


def _remove_code(dirs: list[str], version: int) -> str:
    """Kill what is left in the cgroup, then remove it (safe to eval at top level)."""
    parts = []
    for d in dirs:
        parts.append(
            f'd={q(d)}; if [ -d "$d" ]; then i=0; '
            f"while [ $i -lt 100 ]; do "
            f'[ -e "$d/cgroup.kill" ] && echo 1 > "$d/cgroup.kill" 2>/dev/null; '
            f'for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; '
            f'rmdir "$d" 2>/dev/null && break; i=$((i+1)); sleep 0.05; done; '
            f'[ ! -d "$d" ] || ok=1; fi'
        )
    return "( ok=0; " + "; ".join(parts) + "; exit $ok )"


def _read_stats(ctx: CellContext, version: int, where: dict[str, str]) -> dict[str, str]:
    files = []
    if version == 2:
        d = next(iter(where.values()))
        files = [
            ("peak", f"{d}/memory.peak"),
            ("events", f"{d}/memory.events"),
            ("pids_events", f"{d}/pids.events"),
            ("pids_peak", f"{d}/pids.peak"),
        ]
    else:
        if "memory" in where:
            m = where["memory"]
            files += [
                ("peak", f"{m}/memory.max_usage_in_bytes"),
                ("events", f"{m}/memory.oom_control"),
                ("failcnt", f"{m}/memory.failcnt"),
            ]
        if "pids" in where:
            files += [("pids_events", f"{where['pids']}/pids.events")]
    script = "\n".join(
        f"if [ -r {q(path)} ]; then echo '--- {label}'; cat {q(path)}; fi" for label, path in files
    )
    out = ctx.run_hidden("(\n" + script + "\n)").stdout if files else ""
    sections: dict[str, str] = {}
    label = None
    for line in out.splitlines():
        if line.startswith("--- "):
            label = line[4:]
            sections[label] = ""
        elif label:
            sections[label] += line + "\n"
    return sections


def _field(text: str, key: str) -> int | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return None


def _report(ctx: CellContext, version, cg_name, where, named, limits) -> None:
    stats = _read_stats(ctx, version, where)
    peak = stats.get("peak", "").strip()
    info = {
        "version": version,
        "name": cg_name,
        "paths": sorted(set(where.values())),
        "kept": named,
        "limits": {k: v for k, v in limits.items() if v is not None},
        "memory_peak": int(peak) if peak.isdigit() else None,
        "oom_kills": _field(stats.get("events", ""), "oom_kill") if "events" in stats else None,
        "pids_max_hits": _field(stats.get("pids_events", ""), "max") if "pids_events" in stats else None,
    }
    if "pids_peak" in stats and stats["pids_peak"].strip().isdigit():
        info["pids_peak"] = int(stats["pids_peak"].strip())
    ctx.record.extra["cgroup"] = info
    parts = []
    if info["memory_peak"] is not None:
        parts.append(f"peak memory {info['memory_peak'] / (1 << 20):.1f} MiB")
    if info["oom_kills"]:
        parts.append(f"{info['oom_kills']} OOM kill{'s' if info['oom_kills'] != 1 else ''}")
    if info["pids_max_hits"]:
        parts.append(
            f"pids limit hit {info['pids_max_hits']} time{'s' if info['pids_max_hits'] != 1 else ''}"
        )
    ctx.print(f"[cgroup v{version} {cg_name}] " + (", ".join(parts) or "done") + "\n")


MAGIC = register(
    Magic("cgroup", "run the body in a new cgroup with memory/pids/cpu limits; records OOM kills", run, ARGS,
          cell=True,
          doc="""\
              A control group limits what the processes in it may use together.  The
              body and everything it starts run in a new one with the limits given;
              after the cell the record holds its peak memory, how many processes the
              OOM killer ended and how often the pids limit refused a fork.  cgroup v2
              and v1 both work; the cgroup is removed after the cell unless --name.""",
          example="""\
              %%cgroup --memory 50M --swap 0 --pids 20
              head -c 100M /dev/zero | tail    # killed: tail holds 100M in memory""")
)
