"""What the container magics share (%%chroot, %%overlay, %%unshare,
%%cgroup, %rootfs, %%file): safe names and quoting, the root of a chroot, and
what stacked cell magics tell each other (``ctx.stack``).

Stacked cell magics are compiled innermost first.  The innermost magic that
changes the root (%%chroot, %%overlay) notes the root's absolute path, so an
outer ``%%unshare --mount-proc`` mounts the new /proc inside that root; and each
wrapper notes when the code it returns is one simple command, so an outer
wrapper can ``exec`` it (the body then becomes PID 1 of a new PID namespace).
"""

from __future__ import annotations

import argparse
import re
import secrets
from shlex import quote as q

from ..errors import MagicError
from .context import CellContext

__all__ = ["q", "as_command", "chroot_command", "keep_shell", "resolve_root", "token", "SAFE_NAME", "safe_name"]

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def token() -> str:
    return secrets.token_hex(4)


def safe_name(text: str) -> str:
    """An argparse type: a name that is safe in a path and a mount option."""
    if not SAFE_NAME.match(text):
        raise argparse.ArgumentTypeError(f"a name takes letters, digits, '.', '_' and '-', not {text!r}")
    return text


def as_command(ctx: CellContext, body: str) -> str:
    """``body`` as something to run after ``exec`` or as a program's arguments:
    the body itself when an inner wrapper made it one simple command, else a shell
    running it (bash when the session has it: the body was written for it)."""
    if ctx.stack.get("command") == body:
        return body
    return '"${BASH:-/bin/sh}" -c ' + q(keep_shell(body))


def keep_shell(body: str) -> str:
    """The body followed by ``exit $?``: the shell that runs it stays its parent
    instead of exec'ing the last command, so when that command is killed (OOM)
    the shell reports 128+signal like any shell, even as PID 1 of a namespace."""
    return body + "\nexit $?"


def resolve_root(ctx: CellContext, root: str, what: str) -> str:
    """The absolute, symlink-free path of a root filesystem that has /bin/sh."""
    script = f"""
r={q(root)}
[ -d "$r" ] || {{ echo "no such directory: $r" >&2; exit 1; }}
[ -e "$r/bin/sh" ] || [ -L "$r/bin/sh" ] || {{
  echo "$r has no /bin/sh, so it is not a root filesystem (make one with %rootfs DIR)" >&2; exit 1; }}
cd -- "$r" && pwd -P
"""
    out = ctx.run_script(script, what).strip()
    if not out.startswith("/"):
        raise MagicError(f"{what}: could not resolve {root}")
    return out


def chroot_command(root: str, body: str) -> str:
    """Run ``body`` with the root filesystem's own /bin/sh, chrooted into ``root``."""
    return f"chroot {q(root)} /bin/sh -c {q(keep_shell(body))}"
