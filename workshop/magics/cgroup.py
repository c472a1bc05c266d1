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

import re
from dataclasses import dataclass, field

from . import Magic, MagicCall, MagicError, register, usage_error
from .container import SAFE_NAME, parse_args, q, run_script, stack, token

USAGE = "%%cgroup [--memory 100M] [--swap 0] [--pids 10] [--cpu-weight N] [--name N] [--v1|--v2]"
STATS = ("memory", "pids")  # controllers joined for the record even without limits
_SIZE = re.compile(r"^(\d+)([KMGT]?)(i?B)?$", re.I)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size(text: str, what: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise usage_error(MAGIC, f"{what} takes a size such as 100M, 1G or 65536, not {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


@dataclass
class Hierarchies:
    v2: str | None = None
    v2_controllers: set[str] = field(default_factory=set)
    v1: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    own: dict[str, str] = field(default_factory=dict)  # controller (or "" for v2) -> the shell's cgroup


def detect(ctx) -> Hierarchies:
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
    for line in run_script(ctx, script, "%%cgroup: could not look at the cgroup hierarchies").splitlines():
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


def run(ctx, call: MagicCall, body: str) -> str:
    opts = parse_args(
        MAGIC,
        call.args,
        valued=("--memory", "--swap", "--pids", "--cpu-weight", "--name"),
        flags=("--v1", "--v2"),
    )
    if opts.get("--v1") and opts.get("--v2"):
        raise usage_error(MAGIC, "choose one of --v1 and --v2")
    version = 1 if opts.get("--v1") else 2 if opts.get("--v2") else None
    memory = size(opts.get("--memory"), "--memory") if opts.get("--memory") is not None else None
    swap = size(opts.get("--swap"), "--swap") if opts.get("--swap") is not None else None
    pids = opts.get("--pids")
    if pids is not None and not (pids.isdigit() and int(pids) > 0):
        raise usage_error(MAGIC, f"--pids takes a positive number, not {pids!r}")
    weight = opts.get("--cpu-weight")
    if weight is not None and not (weight.isdigit() and 1 <= int(weight) <= 10000):
        raise usage_error(MAGIC, f"--cpu-weight takes a number from 1 to 10000, not {weight!r}")
    name = opts.get("--name")
    if name is not None and not SAFE_NAME.match(name):
        raise usage_error(MAGIC, f"--name takes letters, digits, '.', '_' and '-', not {name!r}")
    needed = set()
    if memory is not None or swap is not None:
        needed.add("memory")
    if pids is not None:
        needed.add("pids")
    if weight is not None:
        needed.add("cpu")

    found = detect(ctx)
    version = choose(found, needed, version)
    cg_name = name or f"workshop-{token()}"
    if version == 2:
        assert found.v2 is not None
        controllers = sorted((needed | set(STATS)) & found.v2_controllers)
        dirs = [f"{found.v2}/{cg_name}"]
        control = q(found.v2 + "/cgroup.subtree_control")
        setup = [
            f'for c in {" ".join(controllers)}; do grep -qw "$c" {control} || '
            f'echo "+$c" > {control} || exit 1; done'
        ]
        setup.append(f"mkdir -p {q(dirs[0])}")
        d = q(dirs[0])
        if memory is not None:
            setup.append(f"echo {memory} > {d}/memory.max")
        if swap is not None:
            setup.append(f"echo {swap} > {d}/memory.swap.max")
        if pids is not None:
            setup.append(f"echo {pids} > {d}/pids.max")
        if weight is not None:
            setup.append(f"echo {weight} > {d}/cpu.weight")
        where = {c: dirs[0] for c in controllers} or {"": dirs[0]}
    else:
        controllers = sorted(needed | (set(STATS) & set(found.v1)))
        if not controllers:
            controllers = [sorted(found.v1)[0]]
        where = {}
        for c in controllers:
            parent = found.v1[c] + found.own.get(c, "/").rstrip("/")
            where[c] = f"{parent}/{cg_name}"
        dirs = list(dict.fromkeys(where.values()))
        setup = [f"mkdir -p {q(d)}" for d in dirs]
        if memory is not None:
            m = q(where["memory"])
            setup.append(f"echo {memory} > {m}/memory.limit_in_bytes")
        if swap is not None:
            if memory is None:
                raise usage_error(MAGIC, "on cgroup v1, --swap needs --memory (it limits memory + swap)")
            m = q(where["memory"])
            total = memory + swap
            setup.append(
                f"if [ -e {m}/memory.memsw.limit_in_bytes ]; then "
                f"echo {total} > {m}/memory.memsw.limit_in_bytes || "
                f"{{ echo {total} > {m}/memory.memsw.limit_in_bytes && "
                f"echo {memory} > {m}/memory.limit_in_bytes; }}; "
                "else echo 'workshop: no swap accounting on this kernel (swapaccount=1);"
                " --swap not applied' >&2; fi"
            )
        if pids is not None:
            setup.append(f"echo {pids} > {q(where['pids'])}/pids.max")
        if weight is not None:
            shares = max(2, int(weight) * 1024 // 100)
            setup.append(f"echo {shares} > {q(where['cpu'])}/cpu.shares")

    remove = _remove_code(dirs, version)
    key = f"cgroup {cg_name} (v{version})"
    ctx.kernel.register_cleanup(key, remove)
    try:
        run_script(ctx, "set -e\n" + "\n".join(setup), f"%%cgroup: could not make the cgroup {cg_name}")
    except MagicError:
        if ctx.run_hidden(remove).status == 0:
            ctx.kernel.forget_cleanup(key)
        raise

    def after(ctx, outcome) -> None:
        try:
            _report(
                ctx,
                version,
                cg_name,
                where,
                name is not None,
                {
                    "memory": memory,
                    "swap": swap,
                    "pids": int(pids) if pids else None,
                    "cpu_weight": int(weight) if weight else None,
                },
            )
        finally:
            if name is None:
                if ctx.run_hidden(remove, timeout=30).status == 0:
                    ctx.kernel.forget_cleanup(key)
                else:
                    ctx.notice(f"could not remove the cgroup {cg_name} yet; %cleanup retries")

    ctx.after(after)
    procs = " ".join(q(f"{d}/cgroup.procs") for d in dirs)
    state = stack(ctx)
    inner = f"exec {body}" if state.get("command") == body else f"eval {q(body)}"
    enter = (
        f"for __ws_f in {procs}; do sh -c 'echo $PPID' > \"$__ws_f\" || "
        f"{{ echo 'workshop: could not enter the cgroup {cg_name}' >&2; exit 125; }}; done"
    )
    code = f"( {enter}\n{inner}\n)"
    state.pop("command", None)
    return code


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


def _read_stats(ctx, version: int, where: dict[str, str]) -> dict[str, str]:
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


def _report(ctx, version, cg_name, where, named, limits) -> None:
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
    Magic(
        "cgroup",
        USAGE,
        "run the body in a new cgroup with memory/pids/cpu limits; records OOM kills",
        run,
        cell=True,
    )
)
