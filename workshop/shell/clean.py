"""Check scripts in a clean shell: what a student defined cannot change a verdict.

A ``%%check`` script must not run in the student's shell: there a function
named ``test``, ``grep`` or ``[``, an alias, ``set -o`` options or a changed
``PATH`` would decide whether it passes.  It runs instead in a new shell on
the target (same user, the student shell's working directory), started with
an empty environment, a standard ``PATH``, no rc files, and the student
shell's *variables* set as plain data (checks read them, e.g. ``$ROOTFS``):
never its functions, aliases or options.  Variables that steer the shell or
the dynamic loader (``PATH``, ``IFS``, ``BASH_ENV``, ``LD_PRELOAD``...) are
not taken over.
"""

from __future__ import annotations

import re
import shlex
import threading
import time

from ..errors import ChannelClosed
from .channels import STDERR, STDOUT, Channel
from .leftovers import SESSION_VARIABLE
from .result import CommandResult

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# What the student's shell prints about its variables: NAME=VALUE, NUL-ended.
# Only names and values cross over, and the kernel quotes them itself.
# Arrays and maps (attribute a or A) are left out: their ${!name} is one element.
DUMP_VARIABLES = (
    "for __ws_v in $(compgen -v 2>/dev/null); do "
    '[[ "${!__ws_v@a}" == *[aA]* ]] && continue; '
    "builtin printf '%s=%s\\0' \"$__ws_v\" \"${!__ws_v}\"; done; unset __ws_v"
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_REFUSED = re.compile(
    r"^(PATH|IFS|CDPATH|ENV|BASH.*|SHELLOPTS|GLOBIGNORE|PS\d|PROMPT_COMMAND|HOME|SHELL|SHLVL|UID|EUID|PPID|PWD|OLDPWD|"
    r"HISTFILE.*|FUNCNEST|TMOUT|LD_.*|PYTHON.*|PERL5.*|RUBY.*|NODE_OPTIONS|LOCPATH|GCONV_PATH|MALLOC_.*|"
    r"OPTIND|OPTERR|COMP.*|READLINE.*|INPUTRC|MAIL.*|_|__ws_.*)$"
)
MAX_VALUE = 64 * 1024


def parse_variables(dump: str) -> dict[str, str]:
    """Names and values from ``DUMP_VARIABLES`` output, minus the refused ones."""
    found: dict[str, str] = {}
    for item in dump.split("\0"):
        name, eq, value = item.partition("=")
        if eq and _NAME.match(name) and not _REFUSED.match(name) and len(value) <= MAX_VALUE:
            found[name] = value
    return found


def check_command(script: str, variables: dict[str, str], cwd_of_pid: int | None, tag: str,
                  home: str = "", session: str = "") -> tuple[str, bytes]:
    """A command line (sh syntax) that runs a clean shell, and the program to
    write to its input: the variables, then ``script``.

    The program goes through the input, not the command line, which every user
    of the machine can read; the shell reads exactly its length and then gives
    the script /dev/null as input.  ``tag`` ends up on the clean shell's command
    line, so the process can be found and stopped from outside."""
    program = check_program(script, variables)
    cd = (f'd=$(readlink /proc/{cwd_of_pid}/cwd 2>/dev/null) && [ -d "$d" ] && cd "$d"; '
          if cwd_of_pid else "")
    environment = f"PATH={STANDARD_PATH} LANG=C.UTF-8 TERM=dumb"
    if session:  # so that what a dead kernel's check left is found (shell.leftovers)
        environment += f" {SESSION_VARIABLE}={shlex.quote(session)}"
    if home:
        environment += f" HOME={shlex.quote(home)}"
    run = f"-c 'eval \"$(head -c {len(program)})\"' {shlex.quote(tag)}"
    # its own session, so that an interrupt can stop it and all it started
    setsid = "$(command -v setsid >/dev/null 2>&1 && echo setsid -w)"
    command = (
        f"{cd}if command -v bash >/dev/null 2>&1; then "
        f"exec {setsid} env -i {environment} bash --norc --noprofile {run}; "
        f"else exec {setsid} env -i {environment} sh {run}; fi"
    )
    return command, program


def check_program(script: str, variables: dict[str, str]) -> bytes:
    """What a clean shell runs for a check: the student's variables as plain data, then the script.
    ``PWD`` is not among them: the shell starts in the student shell's real directory and sets its own."""
    assignments = "".join(f"{name}={shlex.quote(value)}\n" for name, value in variables.items()
                          if _NAME.match(name) and not _REFUSED.match(name))
    return ("exec </dev/null\n" + assignments + "(\n" + script + "\n)\n").encode("utf-8", "surrogateescape")


def stop_command(tag: str) -> str:
    """Kill the clean shell tagged ``tag`` and everything in its session (the
    pattern in brackets does not match this command's own line)."""
    pattern = shlex.quote(f"[{tag[0]}]{tag[1:]}")
    return f'for p in $(pgrep -f {pattern} 2>/dev/null); do kill -KILL -- -"$p" "$p" 2>/dev/null; done; true'



def collect(channel: Channel, timeout: float | None, stop: threading.Event,
            limit: int = 1 << 20) -> CommandResult:
    """Read a command's channel to its end; ``stop`` (set from another thread)
    or the timeout end the wait (the caller then kills the command)."""
    chunks: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
    sizes = {STDOUT: 0, STDERR: 0}
    deadline = time.monotonic() + timeout if timeout else None
    open_streams = {STDOUT, STDERR}
    result = CommandResult(0)
    while open_streams:
        if stop.is_set():
            result.interrupted = True
            break
        if deadline is not None and time.monotonic() >= deadline:
            result.timed_out = True
            break
        try:
            events = channel.read(0.1)
        except ChannelClosed:
            break
        for stream, data in events:
            if not data:
                open_streams.discard(stream)
            elif sizes[stream] < limit:  # a check that floods its output keeps only the start
                chunks[stream].append(data[: limit - sizes[stream]])
                sizes[stream] += len(data)
    result.stdout = b"".join(chunks[STDOUT]).decode("utf-8", "replace")
    result.stderr = b"".join(chunks[STDERR]).decode("utf-8", "replace")
    if result.interrupted or result.timed_out:
        result.status = 130 if result.interrupted else 124
        return result
    for _ in range(200):  # the status follows EOF closely
        status = channel.exit_status()
        if status is not None:
            result.status = status
            return result
        time.sleep(0.01)
    result.status = 255
    return result
