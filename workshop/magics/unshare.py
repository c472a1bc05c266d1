"""%%unshare [-f -m -u -i -p -n -U -r -C --mount-proc] [--hostname H] — run the
body in new namespaces with util-linux (or busybox) unshare.

Inside a %%chroot or %%overlay, ``--mount-proc`` mounts the new /proc inside
that root, where the body will look for it, and the body's shell is exec'd so
that with ``-fp`` it is PID 1.  ``--hostname H`` (implies ``-u``) sets the host
name inside the new UTS namespace before the body runs.
"""

from __future__ import annotations

import re

from . import Magic, MagicCall, register, usage_error
from .container import as_command, q, run_script, stack

USAGE = "%%unshare [-f -m -u -i -p -n -U -r -C | -fmuipn] [--mount-proc] [--hostname H]"

SHORT = "fmuipnUrC"
LONG = {
    "--fork": "f",
    "--mount": "m",
    "--uts": "u",
    "--ipc": "i",
    "--pid": "p",
    "--net": "n",
    "--user": "U",
    "--map-root-user": "r",
    "--cgroup": "C",
}
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$")


def run(ctx, call: MagicCall, body: str) -> str:
    letters: list[str] = []
    mount_proc = False
    hostname = None
    args = call.args
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if arg in LONG:
            letters.append(LONG[arg])
        elif arg == "--mount-proc":
            mount_proc = True
        elif name == "--hostname":
            if not eq:
                if i + 1 >= len(args):
                    raise usage_error(MAGIC, "--hostname needs a value")
                i += 1
                value = args[i]
            if not HOSTNAME.match(value):
                raise usage_error(MAGIC, f"{value!r} is not a host name (letters, digits, '.', '-')")
            hostname = value
        elif re.fullmatch(r"-[A-Za-z]+", arg):
            bad = [c for c in arg[1:] if c not in SHORT]
            if bad:
                raise usage_error(MAGIC, f"unknown flag -{bad[0]} in {arg}")
            letters.extend(arg[1:])
        else:
            raise usage_error(MAGIC, f"unknown option {arg}")
        i += 1
    if hostname is not None and "u" not in letters:
        letters.append("u")
    if not letters and not mount_proc:
        raise usage_error(MAGIC, "say which namespaces to make (for example -fmuipn)")
    flags = "-" + "".join(dict.fromkeys(letters)) if letters else ""
    words = ["unshare"] + ([flags] if flags else [])
    state = stack(ctx)
    if mount_proc:
        root = state.get("root")
        if root:
            run_script(ctx, f"[ -d {q(root + '/proc')} ] || mkdir -p {q(root + '/proc')}", "%%unshare")
            words.append(q(f"--mount-proc={root}/proc"))
        else:
            words.append("--mount-proc")
    inner_is_command = state.get("command") == body
    if hostname is not None:
        prelude = (
            f"hostname {q(hostname)} 2>/dev/null || "
            f"printf '%s\\n' {q(hostname)} > /proc/sys/kernel/hostname || exit 1\n"
        )
        script = prelude + ("exec " + body if inner_is_command else body)
        tail = '"${BASH:-/bin/sh}" -c ' + q(script)
    else:
        tail = as_command(ctx, body)
    code = " ".join(words) + " -- " + tail
    state["command"] = code
    return code


MAGIC = register(
    Magic(
        "unshare", USAGE, "run the body in new namespaces (own hostname, PIDs, mounts, ...)", run, cell=True
    )
)
