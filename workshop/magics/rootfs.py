"""%rootfs DIR [--from busybox | --from oci:IMAGE | --from tar:FILE] [--upload] —
prepare a root filesystem on the target.

- ``busybox`` (the default): a static busybox and a link for each of its
  applets, in bin, sbin, usr/bin and usr/sbin (made first), plus /proc, /sys,
  /dev, /tmp and a minimal /etc.  The busybox is the target's own when it has a
  static one; else (or with ``--upload``) a static busybox from the machine the
  kernel runs on, sent through the shell.  Static means: it runs chrooted in
  the new, library-free DIR.
- ``oci:IMAGE``: an OCI image copied with skopeo and unpacked with umoci (both
  on the target).  IMAGE is a skopeo reference (``docker://...``,
  ``oci:PATH:TAG``, ...); a path (``/...``, ``./...``) is a local OCI layout,
  anything else an image name in a registry.  A local layout on a target
  without skopeo and umoci is unpacked by its python3 (offline, no tools).
- ``tar:FILE``: a tarball on the target: a flat root filesystem as ``docker
  export`` writes it, or (with skopeo and umoci) an image as ``docker save``
  writes it.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shutil
import struct

from ..arguments import FILES
from ..errors import MagicError
from . import Magic, arguments, register
from ._shared import q
from .context import CellContext

TRANSPORTS = (
    "docker://",
    "oci:",
    "oci-archive:",
    "docker-archive:",
    "dir:",
    "containers-storage:",
    "docker-daemon:",
)
OCI_TOOLS = "needs skopeo and umoci on the target (Debian/Ubuntu: apt-get install skopeo umoci)"


def _source(text: str) -> str:
    if text == "busybox" or (text.startswith(("oci:", "tar:")) and len(text) > 4):
        return text
    raise argparse.ArgumentTypeError(f"unknown source {text!r}: write busybox, oci:IMAGE or tar:FILE")


ARGS = arguments("rootfs")
ARGS.add_argument("dir", metavar="DIR", completions=FILES, help="where the root filesystem goes on the target")
ARGS.add_argument("--from", dest="source", type=_source, default="busybox", metavar="busybox|oci:IMAGE|tar:FILE",
                  completions=("busybox", "oci:", "tar:"),
                  help="busybox (the default): a static busybox and its applet links; oci:IMAGE: an OCI image "
                       "(docker://..., a registry name, or a local OCI layout), with skopeo and umoci on the target; "
                       "tar:FILE: a tarball on the target, as docker export or docker save writes it")
ARGS.add_argument("--upload", action="store_true",
                  help="send this machine's static busybox even when the target has one")


def run(ctx: CellContext, args: argparse.Namespace) -> None:
    directory = _absolute(ctx, args.dir)
    source = args.source
    if args.upload and source != "busybox":
        raise MAGIC.usage_error("--upload goes with --from busybox")
    if source == "busybox":
        _busybox(ctx, directory, upload=args.upload)
    elif source.startswith("oci:"):
        _oci(ctx, directory, _skopeo_ref(source[4:]))
    else:
        _tar(ctx, directory, source[4:])


def _absolute(ctx: CellContext, directory: str) -> str:
    """DIR relative to the shell's current directory, as the student means it
    (the scripts below change directory, and an upload starts elsewhere)."""
    if directory.startswith("/"):
        return directory
    cwd = ctx.run_hidden("pwd").stdout.strip()
    if not cwd.startswith("/"):
        raise MagicError("%rootfs: cannot tell the shell's current directory; give DIR as an absolute path")
    return posixpath.normpath(posixpath.join(cwd, directory))


# ---- busybox ---------------------------------------------------------------
_LAYOUT = """
mkdir -p "$dir" && cd "$dir" || exit 1
mkdir -p bin sbin usr/bin usr/sbin proc sys dev etc tmp root var/tmp || exit 1
chmod 1777 tmp var/tmp
[ -e etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd
[ -e etc/group ] || echo 'root:x:0:' > etc/group
"""

_LINKS = """
cd "$dir" || exit 1
chmod 755 bin/busybox
chroot . /bin/busybox true 2>/dev/null || {
  echo "$src is not a static busybox: it does not run in the library-free $dir" >&2; exit 3; }
# bin, sbin, usr/bin and usr/sbin exist already, so --install -s cannot fail
# half-way; links it could not make are made one by one.
chroot . /bin/busybox --install -s 2>/dev/null
n=0
for a in $(chroot . /bin/busybox --list-full); do
  [ "$a" = bin/busybox ] && continue
  [ -L "$a" ] || { mkdir -p "$(dirname "$a")" && ln -sfn /bin/busybox "$a"; } || exit 1
  n=$((n+1))
done
echo "$n"
"""


def _busybox(ctx: CellContext, directory: str, upload: bool) -> None:
    found = not upload
    if not upload:
        script = f"""
dir={q(directory)}
{_LAYOUT}
src=
for b in /bin/busybox /usr/bin/busybox /sbin/busybox /usr/sbin/busybox /usr/lib/busybox/busybox \\
    $(command -v busybox 2>/dev/null); do
  [ -f "$b" ] || continue
  [ "$b" -ef bin/busybox ] && {{ src=$b; break; }}
  cp "$b" bin/busybox.new && mv -f bin/busybox.new bin/busybox || exit 1
  chmod 755 bin/busybox
  if chroot . /bin/busybox true 2>/dev/null; then src=$b; break; fi
done
[ -n "$src" ] || {{ rm -f bin/busybox; exit 4; }}
{_LINKS}
echo "from $src"
"""
        result = ctx.run_hidden("(\n" + script + "\n)", timeout=120)
        if result.status == 4:
            found = False
            ctx.print("the target has no static busybox; sending the one from this machine\n")
        elif result.status != 0:
            raise MagicError(
                f"%rootfs {directory}: {result.stderr.strip() or f'exit status {result.status}'}"
            )
        else:
            count, _, src = result.stdout.strip().partition("\n")
            ctx.print(f"{directory}: busybox ({src.strip()}) with {count.strip()} applet links\n")
            return
    if not found:
        local = _local_static_busybox()
        _upload(ctx, local, directory)
        out = ctx.run_script(
            f"dir={q(directory)}\nsrc={q('uploaded ' + local)}\n{_LINKS}", f"%rootfs {directory}"
        )
        ctx.print(f"{directory}: busybox (uploaded from {local}) with {out.strip()} applet links\n")


def is_static_elf(path: str) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return False
            wide = head[4] == 2
            order = "<" if head[5] == 1 else ">"
            if wide:
                (phoff,) = struct.unpack_from(order + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            else:
                (phoff,) = struct.unpack_from(order + "I", head, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        (p_type,) = struct.unpack_from(order + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def _local_static_busybox() -> str:
    candidates = [
        "/bin/busybox",
        "/usr/bin/busybox",
        "/usr/lib/busybox/busybox",
        shutil.which("busybox") or "",
    ]
    for path in dict.fromkeys(candidates):
        if path and os.path.isfile(path) and is_static_elf(path):
            return path
    raise MagicError(
        "%rootfs: neither the target nor this machine has a static busybox "
        "(Debian/Ubuntu: apt-get install busybox-static)"
    )


def _upload(ctx: CellContext, local: str, directory: str) -> None:
    """Send this machine's busybox into the new root filesystem on the target."""
    ctx.run_script(f"dir={q(directory)}\n{_LAYOUT}", f"%rootfs {directory}")
    with open(local, "rb") as f:
        data = f.read()
    result = ctx.upload(f"{directory}/bin/busybox", data, mode="755")
    if not result.ok:
        raise MagicError(f"%rootfs: could not send busybox to the target: {result.problem()}")


# ---- OCI images and tarballs -------------------------------------------------
def _skopeo_ref(image: str) -> str:
    if image.startswith(TRANSPORTS):
        return image
    if image.startswith(("/", "./", "../")):
        return "oci:" + image
    return "docker://" + image


_EMPTY = """
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "$dir exists and is not empty; choose a new directory or remove it" >&2; exit 1; fi
"""


# Without skopeo and umoci, a local OCI layout is unpacked by the target's python3:
# the manifest's layers in order, whiteouts applied, nothing written outside DIR
# (a member whose path leads out of it, through ".." or a link, stops the unpacking).
_UNPACK_LAYOUT = r"""
import json, os, shutil, sys, tarfile

trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}  # paths checked below
image, dest = sys.argv[1], os.path.realpath(sys.argv[2])
layout, _, tag = image.rpartition(":") if ":" in image and "/" not in image.rpartition(":")[2] else (image, "", "")


def blob(digest):
    algorithm, _, hexdigest = digest.partition(":")
    return os.path.join(layout, "blobs", algorithm, hexdigest)


def inside(path):
    real = os.path.realpath(os.path.join(dest, path))
    if real != dest and not real.startswith(dest + os.sep):
        sys.exit(f"{image}: the layer entry {path!r} leads outside the root filesystem; install umoci to unpack it")
    return real


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


with open(os.path.join(layout, "index.json")) as f:
    manifests = json.load(f).get("manifests", [])
named = [m for m in manifests if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
chosen = named if tag else manifests
if not chosen:
    sys.exit(f"{layout} has no image tagged {tag!r}")
with open(blob(chosen[0]["digest"])) as f:
    layers = json.load(f)["layers"]
os.makedirs(dest, exist_ok=True)
for layer in layers:
    with tarfile.open(blob(layer["digest"]), "r:*") as tar:
        for member in tar.getmembers():
            parent, name = os.path.split(os.path.normpath(member.name.lstrip("/")))
            if name == ".wh..wh..opq":
                folder = inside(parent)
                for entry in os.listdir(folder) if os.path.isdir(folder) else []:
                    remove(os.path.join(folder, entry))
            elif name.startswith(".wh."):
                remove(os.path.join(inside(parent), name[4:]))
            elif name not in ("", "."):
                target = os.path.join(inside(parent), name)
                if os.path.lexists(target) and not (member.isdir() and os.path.isdir(target)):
                    remove(target)
                member.name = os.path.relpath(target, dest)
                tar.extract(member, dest, set_attrs=True, numeric_owner=True, **trusted)
"""


def _oci_script(directory: str, ref: str) -> str:
    return f"""
dir={q(directory)}; ref={q(ref)}
{_EMPTY}
if ! {{ command -v skopeo && command -v umoci; }} >/dev/null; then
  case "$ref" in
    oci:*) if command -v python3 >/dev/null; then
             python3 -c {q(_UNPACK_LAYOUT)} "${{ref#oci:}}" "$dir" || exit 1; echo ok; exit 0
           fi ;;
  esac
  echo {q(OCI_TOOLS)} >&2; exit 1
fi
policy=; [ -e /etc/containers/policy.json ] || policy=--insecure-policy
tmp=$(mktemp -d /var/tmp/workshop-oci.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
rootless=; [ "$(id -u)" = 0 ] || rootless=--rootless
skopeo $policy copy --quiet "$ref" "oci:$tmp/image:rootfs" >&2 || exit 1
umoci unpack $rootless --image "$tmp/image:rootfs" "$tmp/bundle" >&2 || exit 1
mkdir -p "$dir" && cp -a "$tmp/bundle/rootfs/." "$dir/" || exit 1
echo ok
"""


def _oci(ctx: CellContext, directory: str, ref: str) -> None:
    ctx.run_script(_oci_script(directory, ref), f"%rootfs {directory} --from {ref}", timeout=600)
    ctx.print(f"{directory}: root filesystem of {ref}\n")


def _tar(ctx: CellContext, directory: str, tarball: str) -> None:
    script = f"""
dir={q(directory)}; file={q(tarball)}
[ -f "$file" ] || {{ echo "no such file on the target: $file" >&2; exit 1; }}
{_EMPTY}
if tar -tf "$file" 2>/dev/null | grep -qx 'manifest.json'; then echo image; exit 0; fi
mkdir -p "$dir" || exit 1
tar -xf "$file" -C "$dir" --numeric-owner 2>/dev/null || tar -xf "$file" -C "$dir" || exit 1
echo flat
"""
    kind = ctx.run_script(script, f"%rootfs {directory} --from tar:{tarball}", timeout=600).strip()
    if kind == "image":
        # `docker save` output: layers and a manifest, unpacked as an image.
        try:
            _oci(ctx, directory, f"docker-archive:{tarball}")
        except MagicError as exc:
            raise MagicError(
                f"{exc}\n({tarball} is an image as `docker save` writes it; "
                "a flat `docker export` tarball needs no tools)"
            ) from None
        return
    ctx.print(f"{directory}: root filesystem from {tarball}\n")


MAGIC = register(Magic("rootfs", "prepare a root filesystem: static busybox, OCI image or tarball", run, ARGS,
                       doc="""\
                           A root filesystem is a directory that looks like / : bin, etc,
                           proc, tmp... with programs that run there.  The busybox one is one
                           static program (no libraries needed) and a link for each command it
                           provides, so it works inside %%chroot, %%overlay and %%unshare.
                           DIR is made when missing; a relative DIR is taken from the shell's
                           current directory.""",
                       example="""\
                           %rootfs rootfs
                           ls rootfs/bin | head
                           %%check
                           test -x rootfs/bin/sh || echo "FAIL: no /bin/sh in rootfs"
                           """))
