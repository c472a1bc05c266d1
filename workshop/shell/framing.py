"""The framing protocol between the kernel and its persistent shell.

The shell is an *interactive* shell (``bash -i`` or ``sh -i``) reading commands
from a pipe, with its own diagnostics sent to /dev/null.  An interactive shell
matters for one reason: on SIGINT to its process group it abandons the whole
command line it is running and goes back to reading the next one, keeping its
state.  So each cell is delivered as *one* command line:

    { eval '<cell code, quoted>'; } </dev/null >&50 2>&51

followed by a second line, ``\\__ws_post SEQ``, that prints an end marker carrying
the cell's exit status on both streams.  Whether the cell line finishes, fails
to parse or is interrupted, the shell goes on to the ``__ws_post`` line, so the
framing cannot be broken by anything inside the cell.

Markers are ``\\0WS<nonce>:<fields>\\0`` with a random per-session nonce; a cell
cannot print one by accident, and NUL never appears in a shell string.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field

# File descriptors the driver keeps for the real stdout / stderr, so that a
# cell's own `exec >file` cannot hide the end marker.  POSIX sh only knows
# single-digit descriptors; bash moves them out of the way of user code.
BOOT_OUT_FD, BOOT_ERR_FD = 8, 9
FDS = {"bash": (50, 51), "sh": (8, 9)}


def new_nonce() -> str:
    return secrets.token_hex(8)


def quote_bash_line(text: str) -> str:
    """Quote ``text`` as one bash ``$'...'`` word that fits on one physical line.

    One line keeps bash's LINENO inside ``eval`` equal to the cell's own line
    numbers, which the record uses to name failed commands.
    """
    out = ["$'"]
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def bootstrap_command() -> str:
    """The command that starts the shell on a target (run by ``sh -c``).

    bash when the target has it, POSIX sh otherwise; the driver is sent after.
    """
    return (
        f"exec {BOOT_OUT_FD}>&1 {BOOT_ERR_FD}>&2 2>/dev/null; "
        "if command -v bash >/dev/null; then "
        "exec bash --norc --noprofile --noediting -i; "
        "else exec sh -i; fi"
    )


def hello_line(nonce: str) -> str:
    """First line sent: reports the shell's pid and flavour."""
    return (
        "PS1= PS2= PS4='+ '; unset PROMPT_COMMAND HISTFILE; "
        f"printf '\\0WS{nonce}:hello:%s:%s\\0' \"$$\" \"${{BASH_VERSION:-sh}}\" >&{BOOT_OUT_FD}\n"
    )


def driver_script(nonce: str, flavour: str, state_dir: str) -> str:
    """Shell functions that frame cells; sent once after the hello."""
    mark = f"\\0WS{nonce}:"
    STDOUT_FD, STDERR_FD = FDS[flavour]
    common = f"""
__ws_dir={shlex.quote(state_dir)}
mkdir -p "$__ws_dir" && chmod 700 "$__ws_dir"
rm -f "$__ws_dir/abort"
__ws_stdin= __ws_n=0
"""
    if flavour == "bash":
        return common + f"""
exec {STDOUT_FD}>&{BOOT_OUT_FD} {STDERR_FD}>&{BOOT_ERR_FD} {BOOT_OUT_FD}>&- {BOOT_ERR_FD}>&-
set +o history +H; shopt -u checkwinsize 2>/dev/null
__ws_errs=
__ws_bg=
__ws_pre() {{
  __ws_errs=; __ws_stdin=$1
  # remember the jobs that exist before the cell, to stop only its own on interrupt
  [ "${{!-}}" = "$__ws_bg" ] || {{ __ws_bg=${{!-}}; jobs -p >"$__ws_dir/jobs"; }}
}}
__ws_reap() {{
  local p
  for p in $(jobs -p); do
    grep -qx "$p" "$__ws_dir/jobs" 2>/dev/null || {{ kill -TERM "$p"; pkill -TERM -P "$p"; }} 2>/dev/null
  done
  printf '{mark}reaped\\0' >&{STDOUT_FD}
}}
__ws_post() {{
  local st=$?
  builtin printf '{mark}end:%s:%s:%s\\0' "$1" "$st" "$__ws_errs" >&{STDOUT_FD}
  builtin printf '{mark}end:%s\\0' "$1" >&{STDERR_FD}
  __ws_errs=; __ws_stdin=
  # a test before rm: a process per cell would be most of a cell's cost
  if [ -e "$__ws_dir/abort" ]; then rm -f "$__ws_dir/abort"; fi
}}
__ws_l0=0
# The traps only call functions: a trap's text is parsed each time it runs, and
# a function call still parses when a cell has left bash's parser confused.
__ws_on_err() {{
  [ "${{BASH_COMMAND#?__ws_}}" = "$BASH_COMMAND" ] &&
    __ws_errs+="$(($2-__ws_l0+1)) $1 ${{BASH_COMMAND//[$'\\n\\t']/ }}"$'\\n'
  return 0
}}
__ws_on_debug() {{
  # a cell that catches SIGINT still stops at its next command
  if [ "${{BASH_COMMAND#?__ws_}}" = "$BASH_COMMAND" ] && [ -e "$__ws_dir/abort" ]; then
    rm -f "$__ws_dir/abort"; kill -INT $$
  fi 2>/dev/null
}}
trap '__ws_on_err "$?" "$LINENO"' ERR
trap '__ws_on_debug' DEBUG
read() {{
  case " $* " in *" -u"*) builtin read "$@"; return;; esac
  if [ -n "$__ws_stdin" ] && [ /dev/stdin -ef /dev/null ]; then
    # a fresh FIFO per request: a late writer of an earlier answer cannot reach it
    __ws_n=$((__ws_n+1)); local f="$__ws_dir/in.$__ws_n" st
    mkfifo "$f" || {{ builtin read "$@"; return; }}
    printf '{mark}in:%s:' "$__ws_n" >&{STDOUT_FD}; printf '%s\\037' "$@" >&{STDOUT_FD}; printf '\\0' >&{STDOUT_FD}
    builtin read "$@" <"$f"; st=$?; rm -f "$f"; return $st
  else
    builtin read "$@"
  fi
}}
__ws_complete() {{
  case "$1" in */*) ;; *) compgen -A command -- "$1" 2>/dev/null | head -n 300;; esac
  compgen -A file -- "$1" 2>/dev/null | head -n 300 | while IFS= read -r f; do
    if [ -d "$f" ]; then builtin printf '%s/\\n' "$f"; else builtin printf '%s\\n' "$f"; fi; done
  case "$1" in \\$*) compgen -A variable -P '$' -- "${{1#\\$}}" 2>/dev/null;; esac
}}
readonly -f __ws_pre __ws_post __ws_reap __ws_complete __ws_on_err __ws_on_debug; readonly __ws_dir
printf '{mark}ready\\0' >&{STDOUT_FD}
"""
    return common + f"""
__ws_pre() {{ __ws_stdin=$1; }}
__ws_reap() {{ printf '{mark}reaped\\0' >&{STDOUT_FD}; }}
read() {{
  if [ -n "$__ws_stdin" ] && [ /dev/stdin -ef /dev/null ]; then
    __ws_n=$((__ws_n+1))
    mkfifo "$__ws_dir/in.$__ws_n" || {{ command read "$@"; return; }}
    printf '{mark}in:%s:' "$__ws_n" >&{STDOUT_FD}; printf '%s\\037' "$@" >&{STDOUT_FD}; printf '\\0' >&{STDOUT_FD}
    command read "$@" <"$__ws_dir/in.$__ws_n"; __ws_st=$?; rm -f "$__ws_dir/in.$__ws_n"; return $__ws_st
  else
    command read "$@"
  fi
}}
__ws_complete() {{
  for f in "$1"*; do [ -e "$f" ] || continue
    if [ -d "$f" ]; then printf '%s/\\n' "$f"; else printf '%s\\n' "$f"; fi; done
  case "$1" in */*) ;; *)
    IFS=:; for d in $PATH; do for f in "$d/$1"*; do [ -x "$f" ] && printf '%s\\n' "${{f##*/}}"; done; done
    unset IFS;; esac
}}
printf '{mark}ready\\0' >&{STDOUT_FD}
"""


def cell_lines(code: str, seq: int, flavour: str, allow_stdin: bool, nonce: str) -> str:
    """The two command lines that run one cell.

    A leading backslash keeps a cell's aliases off the driver's names.  bash's
    driver functions are read-only; POSIX sh cannot protect a function, so there
    the end-marker line is written out in full and a cell cannot unset it.
    """
    flag = "1" if allow_stdin else ""
    STDOUT_FD, STDERR_FD = FDS[flavour]
    if flavour == "bash":
        body = (
            f"\\__ws_pre '{flag}'; {{ __ws_l0=$LINENO; builtin eval {quote_bash_line(code)}; }}"
            f" </dev/null >&{STDOUT_FD} 2>&{STDERR_FD}"
        )
        # A syntax error inside `eval` in a `case` can leave bash's own parser
        # unable to see reserved words on the next line (bash 5.2); `{` then
        # fails, and a syntax error in a throwaway `eval` resets the parser.
        post = f"\\__ws_post {seq}; {{ :; }} 2>/dev/null || builtin eval ';' 2>/dev/null"
    else:
        body = (
            f"\\__ws_pre '{flag}'; {{ \\eval {shlex.quote(code)}; }}"
            f" </dev/null >&{STDOUT_FD} 2>&{STDERR_FD}"
        )
        mark = f"\\0WS{nonce}:end:{seq}"
        post = (
            f"__ws_st=$?; command printf '{mark}:%s:\\0' \"$__ws_st\" >&{STDOUT_FD}; "
            f"command printf '{mark}\\0' >&{STDERR_FD}; __ws_stdin="
        )
    return f"{body}\n{post}\n"


@dataclass
class Marker:
    kind: str  # "hello", "ready", "end", "in"
    fields: list[str] = field(default_factory=list)


class MarkerScanner:
    """Splits one output stream into plain data and framing markers.

    Holds back only a tail that could be the start of a marker, so output
    without a trailing newline still streams live.
    """

    def __init__(self, nonce: str) -> None:
        self._prefix = b"\0WS" + nonce.encode() + b":"
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes | Marker]:
        buf = self._pending + data if self._pending else data
        self._pending = b""
        items: list[bytes | Marker] = []
        prefix = self._prefix
        start = 0
        while True:
            idx = buf.find(prefix, start)
            if idx < 0:
                break
            end = buf.find(b"\0", idx + len(prefix))
            if end < 0:
                break  # marker not complete yet: keep it pending
            if idx > start:
                items.append(buf[start:idx])
            body = buf[idx + len(prefix) : end].decode("utf-8", "replace")
            kind, _, rest = body.partition(":")
            if kind == "in":
                fields = [rest]
            else:
                fields = rest.split(":", 2) if rest else []
            items.append(Marker(kind, fields))
            start = end + 1
        tail = buf[start:]
        hold = _partial_marker_start(tail, prefix)
        if hold is not None:
            self._pending = tail[hold:]
            tail = tail[:hold]
        if tail:
            items.append(tail)
        return items

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        return data


def _partial_marker_start(tail: bytes, prefix: bytes) -> int | None:
    """Index in ``tail`` from which a marker may be starting, if any."""
    pos = tail.rfind(b"\0WS")
    if pos < 0:
        # a lone trailing NUL or "\0W" could still begin a marker
        for cut in (1, 2):
            if len(tail) >= cut and prefix.startswith(tail[-cut:]):
                return len(tail) - cut
        return None
    candidate = tail[pos:]
    if prefix.startswith(candidate[: len(prefix)]):
        return pos
    return None
