"""%%overlay ROOTFS [--name NAME] — run the body in a fresh overlayfs snapshot of
ROOTFS; %overlay ls and %overlay rm NAME manage the named snapshots.

Each snapshot is a directory on the target, private to the kernel:
``/var/tmp/workshop-<kernel>/overlay/<snapshot>/`` with ``lower`` (a symlink to
ROOTFS, so odd characters in its path never reach the mount options), ``upper``,
``work`` and ``merged``.  The body runs chrooted into ``merged``; everything it
writes lands in ``upper``, so ROOTFS is never changed, and after the cell the
upper directory says what the container added, modified and deleted (deletions
are overlayfs whiteouts: character devices 0/0).
"""

from __future__ import annotations

from argparse import Namespace

from ..arguments import FILES
from ..errors import MagicError
from . import Magic, arguments, register
from ._shared import chroot_command, q, resolve_root, safe_name, token
from .context import CellContext

CELL_ARGS = arguments("overlay", cell=True)
CELL_ARGS.add_argument("rootfs", metavar="ROOTFS", completions=FILES,
                       help="the root filesystem the snapshot is made of; it is never changed")
CELL_ARGS.add_argument("--name", type=safe_name, metavar="NAME",
                       help="keep the snapshot under NAME; a later %%overlay of the same ROOTFS with --name NAME goes on from it")
LINE_ARGS = arguments("overlay")
_ACTIONS = LINE_ARGS.add_subparsers(dest="action", required=True, metavar="ls|rm")
_ACTIONS.add_parser("ls", prog="%overlay ls", help="list the named snapshots and how much each changed")
_ACTIONS.add_parser("rm", prog="%overlay rm", help="unmount and delete the snapshot NAME").add_argument(
    "name", type=safe_name, metavar="NAME", help="a snapshot's name, as %overlay ls shows it")
SHOWN = 40  # changes listed after a cell; the record keeps up to KEPT of each kind
KEPT = 1000


SNAPSHOTS_IN = "/var/tmp"


def base_dir(ctx: CellContext) -> str:
    return f"{SNAPSHOTS_IN}/workshop-{ctx.state('token', token)}/overlay"


def _remove_code(snap: str, base: str) -> str:
    """Shell code (safe to eval at top level) that unmounts and deletes a snapshot."""
    d = q(snap)
    return (
        f'( d={d}; if mountpoint -q "$d/merged" 2>/dev/null; then '
        f'umount "$d/merged" 2>/dev/null || umount -l "$d/merged" || exit 1; fi; '
        f'mountpoint -q "$d/merged" 2>/dev/null && exit 1; rm -rf "$d" || exit 1; '
        f'rmdir {q(base)} "$(dirname {q(base)})" 2>/dev/null; exit 0 )'
    )


def _cleanup_key(snap: str) -> str:
    return f"overlay snapshot {snap}"


def run_cell(ctx: CellContext, args: Namespace, body: str) -> str:
    name = args.name
    root = resolve_root(ctx, args.rootfs, "%%overlay")
    base = base_dir(ctx)
    snap = f"{base}/{name or 'cell-' + token()}"
    setup = f"""
d={q(snap)}; root={q(root)}
if [ -L "$d/lower" ]; then
  was=$(readlink "$d/lower")
  [ "$was" = "$root" ] || {{ echo "snapshot {name} is a snapshot of $was, not of $root" >&2; exit 7; }}
fi
for sub in upper work merged; do mkdir -p "$d/$sub" || exit 1; done  # one error, not one per directory
chmod 700 "$d" && ln -sfn "$root" "$d/lower" || exit 1
mountpoint -q "$d/merged" && exit 0
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged"
"""
    ctx.register_cleanup(_cleanup_key(snap), _remove_code(snap, base))
    result = ctx.run_hidden("(\n" + setup + "\n)")
    if result.status != 0:
        if result.status != 7:  # 7: a named snapshot of another root, left as it was
            _remove(ctx, snap, base)
        detail = result.stderr.strip() or f"exit status {result.status}"
        if "No space left on device" in detail:
            detail += (f"; free space on the filesystem of {SNAPSHOTS_IN}, where snapshots are kept "
                       f"(df -h {SNAPSHOTS_IN} shows it; %overlay rm NAME removes a named snapshot)")
        raise MagicError(f"%%overlay: could not make the snapshot: {detail}")
    merged = f"{snap}/merged"

    def after(ctx, outcome) -> None:
        try:
            _report(ctx, snap, name)
        finally:
            if name is None:
                _remove(ctx, snap, base)

    ctx.after(after)
    code = chroot_command(merged, body)
    ctx.stack["root"] = merged
    ctx.stack["command"] = code
    return code


def _remove(ctx: CellContext, snap: str, base: str) -> None:
    result = ctx.run_hidden(_remove_code(snap, base))
    if result.status == 0:
        ctx.forget_cleanup(_cleanup_key(snap))
    else:
        ctx.notice(f"could not remove the snapshot {snap} yet; %cleanup retries")


def changes(ctx: CellContext, snap: str) -> dict[str, list[str]]:
    script = f"""
d={q(snap)}
cd "$d/upper" || exit 1
find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
  p=${{p#./}}
  if [ -c "$p" ] && [ "$(stat -c %t:%T "$p")" = 0:0 ]; then echo "D $p"
  elif [ -e "$d/lower/$p" ] || [ -L "$d/lower/$p" ]; then
    [ -d "$p" ] && [ ! -L "$p" ] || echo "M $p"
  else echo "A $p"; fi
done
"""
    out = ctx.run_script(script, "%%overlay: could not read the snapshot's changes")
    found: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}
    kinds = {"A": "added", "M": "modified", "D": "deleted"}
    for line in out.splitlines():
        kind, _, path = line.partition(" ")
        if kind in kinds:
            found[kinds[kind]].append("/" + path)
    return found


def _report(ctx: CellContext, snap: str, name: str | None) -> None:
    found = changes(ctx, snap)
    ctx.record.extra["overlay"] = {
        "snapshot": name,
        **{kind: paths[:KEPT] for kind, paths in found.items()},
        "counts": {kind: len(paths) for kind, paths in found.items()},
    }
    total = sum(len(p) for p in found.values())
    label = f"snapshot {name}" if name else "the container"
    if not total:
        ctx.print(f"[overlay] {label} changed nothing\n")
        return
    counts = ", ".join(f"{len(found[k])} {k}" for k in ("added", "modified", "deleted"))
    lines = [f"[overlay] {label}: {counts}"]
    marks = {"added": "+", "modified": "~", "deleted": "-"}
    shown = 0
    for kind in ("added", "modified", "deleted"):
        for path in found[kind]:
            if shown == SHOWN:
                break
            lines.append(f"  {marks[kind]} {path}")
            shown += 1
    if total > shown:
        lines.append(f"  ... and {total - shown} more (the record lists up to {KEPT} of each)")
    ctx.print("\n".join(lines) + "\n")


def run_line(ctx: CellContext, args: Namespace) -> None:
    base = base_dir(ctx)
    if args.action == "ls":
        _list(ctx, base)
        return
    snap = f"{base}/{args.name}"
    if ctx.run_hidden(f"[ -d {q(snap)} ]").status != 0:
        raise MagicError(f"no snapshot named {args.name} (%overlay ls lists them)")
    result = ctx.run_hidden(_remove_code(snap, base))
    if result.status != 0:
        raise MagicError(f"could not remove snapshot {args.name}: {result.stderr.strip() or 'busy?'}")
    ctx.forget_cleanup(_cleanup_key(snap))
    ctx.print(f"removed snapshot {args.name}\n")


def _list(ctx: CellContext, base: str) -> None:
    script = f"""
cd {q(base)} 2>/dev/null || exit 0
for d in *; do
  [ -d "$d" ] || continue
  case "$d" in cell-*) continue;; esac
  n=$(find "$d/upper" -mindepth 1 2>/dev/null | wc -l)
  if mountpoint -q "$d/merged"; then m="mounted at {base}/$d/merged"; else m="not mounted"; fi
  printf '%s\\t%s\\t%s\\t%s\\n' "$d" "$(readlink "$d/lower")" "$n" "$m"
done
"""
    out = ctx.run_script(script, "%overlay ls")
    rows = [line.split("\t") for line in out.splitlines() if line.count("\t") == 3]
    if not rows:
        ctx.print("no named snapshots\n")
        return
    for snap, lower, count, mounted in rows:
        ctx.print(f"{snap}\tof {lower}\t{count} entries in upper\t{mounted}\n")


register(Magic("overlay", "run the body in a fresh overlayfs snapshot of ROOTFS (kept with --name); shows the changes",
               run_cell, CELL_ARGS, cell=True,
               doc="""\
                   An overlay mount puts an empty, writable upper directory over ROOTFS;
                   the body runs chrooted into the merged view, as with %%chroot.  Whatever
                   it writes, changes or deletes lands in the upper directory, so ROOTFS
                   stays as it was, and after the cell the kernel lists what the container
                   added, modified and deleted.  Without --name the snapshot goes away
                   after the cell; with it, it stays until %overlay rm NAME or %cleanup.""",
               example="""\
                   %%overlay rootfs --name try1
                   rm /bin/ls
                   echo hello > /hello.txt"""))
register(Magic("overlay", "list or remove named overlay snapshots", run_line, LINE_ARGS,
               doc="The snapshots that %%overlay ROOTFS --name NAME made and kept.",
               example="""\
                   %overlay ls
                   %overlay rm try1"""))
