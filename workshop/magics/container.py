"""Helpers shared by the container magics (%%chroot, %%overlay, %%unshare,
%%cgroup, %rootfs, %%file, %cleanup): argument parsing, safe quoting, running
setup code on the target, and what stacked cell magics tell each other.

Stacked cell magics are compiled innermost first.  The innermost magic that
changes the root (%%chroot, %%overlay) notes the root's absolute path, so an
outer ``%%unshare --mount-proc`` mounts the new /proc inside that root; and each
wrapper notes when the code it returns is one simple command, so an outer
wrapper can ``exec`` it (the body then becomes PID 1 of a new PID namespace).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..shell.framing import quote_posix as q
from . import Magic, MagicError, usage_error

__all__ = ["q", "Options", "parse_args", "run_script", "stack", "token", "SAFE_NAME"]

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def token() -> str:
    return secrets.token_hex(4)


@dataclass
class Options:
    values: dict[str, Any] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def parse_args(
    magic: Magic,
    args: list[str],
    valued: tuple[str, ...] = (),
    flags: tuple[str, ...] = (),
    npos: tuple[int, int] = (0, 0),
) -> Options:
    """Parse ``--opt VALUE``, ``--opt=VALUE`` and ``--flag``; anything else that
    starts with ``-`` is an error that shows the usage."""
    opts = Options()
    i = 0
    only_positional = False
    while i < len(args):
        arg = args[i]
        if only_positional or not arg.startswith("-") or arg == "-":
            opts.positional.append(arg)
        elif arg == "--":
            only_positional = True
        else:
            name, eq, value = arg.partition("=")
            if name in valued:
                if not eq:
                    if i + 1 >= len(args):
                        raise usage_error(magic, f"{name} needs a value")
                    i += 1
                    value = args[i]
                opts.values[name] = value
            elif name in flags and not eq:
                opts.values[name] = True
            else:
                raise usage_error(magic, f"unknown option {arg}")
        i += 1
    low, high = npos
    if not low <= len(opts.positional) <= high:
        if not opts.positional and low:
            raise usage_error(magic, "missing argument")
        raise usage_error(
            magic,
            f"unexpected argument {opts.positional[-1]!r}"
            if len(opts.positional) > high
            else "missing argument",
        )
    return opts


def run_script(ctx, script: str, what: str, timeout: float | None = 120) -> str:
    """Run ``script`` (POSIX sh) in a subshell of the kernel's shell, hidden;
    return its stdout, or raise MagicError with ``what`` and its stderr."""
    result = ctx.run_hidden("(\n" + script + "\n)", timeout=timeout)
    if result.status != 0:
        detail = result.stderr.strip() or f"exit status {result.status}"
        raise MagicError(f"{what}: {detail}")
    return result.stdout


def stack(ctx) -> dict:
    """What the cell magics of this cell tell each other (see the module doc)."""
    return ctx.__dict__.setdefault("_container_stack", {})


def as_command(ctx, body: str) -> str:
    """``body`` as something to run after ``exec`` or as a program's arguments:
    the body itself when an inner wrapper made it one simple command, else a shell
    running it (bash when the session has it: the body was written for it)."""
    if stack(ctx).get("command") == body:
        return body
    return '"${BASH:-/bin/sh}" -c ' + q(keep_shell(body))


def keep_shell(body: str) -> str:
    """The body followed by ``exit $?``: the shell that runs it stays its parent
    instead of exec'ing the last command, so when that command is killed (OOM)
    the shell reports 128+signal like any shell, even as PID 1 of a namespace."""
    return body + "\nexit $?"


def resolve_root(ctx, root: str, what: str) -> str:
    """The absolute, symlink-free path of a root filesystem that has /bin/sh."""
    script = f"""
r={q(root)}
[ -d "$r" ] || {{ echo "no such directory: $r" >&2; exit 1; }}
[ -e "$r/bin/sh" ] || [ -L "$r/bin/sh" ] || {{
  echo "$r has no /bin/sh, so it is not a root filesystem (make one with %rootfs DIR)" >&2; exit 1; }}
cd -- "$r" && pwd -P
"""
    out = run_script(ctx, script, what).strip()
    if not out.startswith("/"):
        raise MagicError(f"{what}: could not resolve {root}")
    return out


def chroot_command(root: str, body: str) -> str:
    """Run ``body`` with the root filesystem's own /bin/sh, chrooted into ``root``."""
    return f"chroot {q(root)} /bin/sh -c {q(keep_shell(body))}"
