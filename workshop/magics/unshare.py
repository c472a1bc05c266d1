"""%%unshare [-f -m -u -i -p -n -U -r -C --mount-proc] [--hostname H] — run the
body in new namespaces with util-linux (or busybox) unshare.

Inside a %%chroot or %%overlay, ``--mount-proc`` mounts the new /proc inside
that root, where the body will look for it, and the body's shell is exec'd so
that with ``-fp`` it is PID 1.  ``--hostname H`` (implies ``-u``) sets the host
name inside the new UTS namespace before the body runs.
"""

from __future__ import annotations

import argparse
import re

from . import Magic, arguments, register
from ._shared import as_command, q
from .context import CellContext

NAMESPACES = {  # flag letter -> long option, as util-linux unshare spells them, and what it does
    "f": ("--fork", "run the body in a child of unshare (needed with -p: the body is then PID 1)"),
    "m": ("--mount", "a new mount namespace: mounts made inside stay inside"),
    "u": ("--uts", "a new UTS namespace: its own host name"),
    "i": ("--ipc", "a new IPC namespace: its own message queues and shared memory"),
    "p": ("--pid", "a new PID namespace: its own process numbers (with -f)"),
    "n": ("--net", "a new network namespace: only a loopback interface, down"),
    "U": ("--user", "a new user namespace"),
    "r": ("--map-root-user", "root inside maps to your user outside (implies -U)"),
    "C": ("--cgroup", "a new cgroup namespace: the body sees its cgroup as /"),
}
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$")


def _hostname(text: str) -> str:
    if not HOSTNAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name (letters, digits, '.', '-')")
    return text


ARGS = arguments("unshare", cell=True)
for _letter, (_long, _help) in NAMESPACES.items():
    ARGS.add_argument(f"-{_letter}", _long, dest=_letter, action="store_true", help=_help)
ARGS.add_argument("--mount-proc", action="store_true",
                  help="mount a new /proc for the new PID namespace (inside the %%chroot or %%overlay root, when "
                       "there is one), so ps shows only the body's processes")
ARGS.add_argument("--hostname", type=_hostname, metavar="H", help="set the host name inside (implies -u)")


def run(ctx: CellContext, args: argparse.Namespace, body: str) -> str:
    letters = [letter for letter in NAMESPACES if getattr(args, letter)]
    if args.hostname is not None and "u" not in letters:
        letters.append("u")
    if not letters and not args.mount_proc:
        raise MAGIC.usage_error("say which namespaces to make (for example -fmuipn)")
    words = ["unshare"] + (["-" + "".join(letters)] if letters else [])
    if args.mount_proc:
        root = ctx.stack.get("root")
        if root:
            ctx.run_script(f"[ -d {q(root + '/proc')} ] || mkdir -p {q(root + '/proc')}", "%%unshare")
            words.append(q(f"--mount-proc={root}/proc"))
        else:
            words.append("--mount-proc")
    if args.hostname is not None:
        prelude = (
            f"hostname {q(args.hostname)} 2>/dev/null || "
            f"printf '%s\\n' {q(args.hostname)} > /proc/sys/kernel/hostname || exit 1\n"
        )
        inner_is_command = ctx.stack.get("command") == body
        script = prelude + ("exec " + body if inner_is_command else body)
        tail = '"${BASH:-/bin/sh}" -c ' + q(script)
    else:
        tail = as_command(ctx, body)
    code = " ".join(words) + " -- " + tail
    ctx.stack["command"] = code
    return code


MAGIC = register(
    Magic("unshare", "run the body in new namespaces (own hostname, PIDs, mounts, ...)", run, ARGS, cell=True,
          doc="""\
              The body runs under util-linux (or busybox) unshare, in the namespaces the
              flags name; letters combine (-fmuipn).  What happens inside a namespace
              (a host name, mounts, processes) is not seen outside it, and the
              namespaces end with the body.  Put it above %%chroot or %%overlay to run a
              container's shell in them.""",
          example="""\
              %%unshare -fmuipn --mount-proc --hostname box
              hostname
              ps ax    # the body's shell is PID 1"""))
