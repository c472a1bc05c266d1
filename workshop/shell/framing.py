"""The framing protocol between the session and its persistent shell.

The shell is an *interactive* shell (``bash -i`` or ``sh -i``) reading commands
from a pipe, with its own diagnostics sent to /dev/null.  An interactive shell
matters for one reason: on SIGINT to its process group it abandons the whole
command line it is running and goes back to reading the next one, keeping its
state.  So each cell is delivered as *one* command line:

    \\__ws_pre ''; { eval '<cell code, quoted>'; } </dev/null >&50 2>&51; \\__ws_post SEQ TOKEN

``__ws_post`` prints an end marker carrying the cell's exit status on both
streams.  Markers are ``\0WS<nonce>:<fields>\0`` with a random per-session
nonce, and an end marker also carries a fresh random TOKEN of its cell.  The
token reaches the shell only inside the cell's own command line, which bash
has read completely before the cell's code starts: output of the cell, even
output that knows the nonce (it is in the driver's functions, which a cell can
print), cannot end a cell.  An end marker with the nonce but a wrong token is
a forgery and is reported as such; a real end marker that arrives late (for an
earlier cell) says that an earlier end was forged, and is reported too.

When an interrupt abandons the command line, ``__ws_post`` never runs; the
runner then sends a line of its own, ``\\__ws_post SEQ TOKEN2``, with a new token.
The driver calls only builtins, through ``builtin``, and keywords (``[[ ]]``):
a cell that redefines ``[``, ``test``, ``printf`` or ``kill`` does not reach it.
A cell that breaks its shell beyond that (shadowing ``builtin`` itself,
disabling builtins, closing the framing descriptors) is caught by the session's
idle probe: the shell waits for input, yet the cell never ended.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field

from .leftovers import owner_script

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


# A cgroup a sealed VM's agent makes (vm/agent.py) with limits for the student's
# processes; a shell that finds it joins it, so a fork bomb stops at its limit and
# sshd, the relay and the agent keep room to work.  Nowhere else does it exist.
CELLS_CGROUP = "/sys/fs/cgroup/student-cells"


def bootstrap_command() -> str:
    """The command that starts the shell on a target (run by ``sh -c``).

    bash when the target has it, POSIX sh otherwise; the driver is sent after.
    """
    return (
        f"exec {BOOT_OUT_FD}>&1 {BOOT_ERR_FD}>&2 2>/dev/null; "
        f"[ -w {CELLS_CGROUP}/cgroup.procs ] && echo $$ > {CELLS_CGROUP}/cgroup.procs; "
        "if command -v bash >/dev/null; then "
        "exec bash --norc --noprofile --noediting -i; "
        "else exec sh -i; fi"
    )


# No prompts (they would go nowhere), nothing run between cells, no history file.
_QUIET = "PS1= PS2= PS4='+ '; unset PROMPT_COMMAND HISTFILE"


def hello_line(nonce: str) -> str:
    """First line sent: reports the shell's pid and flavour."""
    return (
        f"{_QUIET}; "
        f"printf '\\0WS{nonce}:hello:%s:%s|%s\\0' \"$$\" \"${{BASH_VERSION:-sh}}\" "
        f"\"$(readlink /proc/$$/fd/0 2>/dev/null)\" >&{BOOT_OUT_FD}\n"
    )


def startup_file_line() -> str:
    """Sources the user's ~/.bashrc (its aliases and functions), sent between
    the hello and the driver when asked for.  What it prints is dropped, it
    reads no input, and the prompt settings are set back after it."""
    return f"[ -r ~/.bashrc ] && . ~/.bashrc </dev/null >/dev/null 2>&1; {_QUIET}\n"


# Isolated cells (bash only): in a grading rerun a student's cell runs in a
# subshell, so the functions, aliases, traps, options and disabled builtins it
# makes die with it and never reach the instructor's cells that follow.  What a
# later cell may need of it travels back as data: the working directory, the
# umask, its variables (scalars and indexed arrays), the commands that failed.
# The subshell writes them to a file; the shell reads that file with `read`
# only and assigns with `printf -v`, so nothing in it is ever run.  Names the
# shell or programs read as code or as a place to look for code (BASH_ENV,
# PS4, PROMPT_COMMAND, IFS, LD_*, ...) are not taken, nor new exports; PATH
# keeps only directories it had.  Associative arrays stay as they were.
_KEPT_NAMES = ("BASH*|SHELLOPTS|POSIXLY_CORRECT|PS[0-4]|PROMPT_COMMAND*|ENV|IFS|CDPATH|GLOBIGNORE|HIST*|LD_*"
               "|EUID|UID|PPID|SHLVL|RANDOM|SRANDOM|SECONDS|LINENO|FUNCNAME|GROUPS|OPT*|PIPESTATUS|COMP*"
               "|READLINE*|TMOUT|MAIL*|PWD|OLDPWD|_|EPOCH*|HOSTNAME|HOSTTYPE|MACHTYPE|OSTYPE|COLUMNS|LINES"
               "|INPUTRC|TIMEFORMAT|FIGNORE|EXECIGNORE|FUNCNEST|TERM*|__ws_*")
_ISOLATION = r"""__ws_sub() {
  # the shell's own streams are not the cell's to keep: what it leaves running
  # writes on the relay's second pair, which the kernel reads only while such a cell runs
  builtin exec 50>&52 51>&53 52>&- 53>&-
  builtin trap '__ws_on_err "$?" "$LINENO"' ERR; builtin trap '__ws_on_debug' DEBUG
  builtin trap '__ws_leave' EXIT
}
__ws_leave() {
  builtin local __ws_k __ws_i
  { builtin printf 'errs\0%s\0cwd\0%s\0umask\0%s\0' "$__ws_errs" "$(builtin pwd)" "$(builtin umask)"
    for __ws_k in $(builtin compgen -A variable); do
      case "$__ws_k" in KEPT) continue;; esac
      case "${!__ws_k@a}" in
        *A*) builtin printf 'keep\0%s\0' "$__ws_k";;
        *a*) builtin local -n __ws_r="$__ws_k"
             builtin printf 'arr\0%s\0%s\0%s\0' "$__ws_k" "${!__ws_k@a}" "${#__ws_r[@]}"
             for __ws_i in "${!__ws_r[@]}"; do builtin printf '%s\0%s\0' "$__ws_i" "${__ws_r[$__ws_i]}"; done
             builtin unset -n __ws_r;;
        *) builtin printf 'var\0%s\0%s\0%s\0' "$__ws_k" "${!__ws_k@a}" "${!__ws_k}";;
      esac
    done
    builtin printf 'end\0'
  } >"$__ws_dir/state" 2>/dev/null
}
__ws_join() {
  __ws_rc=$?  # the cell's status, for __ws_post
  builtin local __ws_k __ws_n __ws_a __ws_v __ws_c __ws_i __ws_x __ws_seen=' ' __ws_e __ws_p __ws_p0=$PATH __ws_end=
  __ws_errs=
  [[ -f "$__ws_dir/state" ]] || builtin return 0
  while IFS= builtin read -r -d '' __ws_k; do
    case "$__ws_k" in
      errs) IFS= builtin read -r -d '' __ws_errs;;
      cwd) IFS= builtin read -r -d '' __ws_v; builtin cd -- "$__ws_v";;
      umask) IFS= builtin read -r -d '' __ws_v; [[ "$__ws_v" =~ ^[0-7]{1,4}$ ]] && builtin umask "$__ws_v";;
      keep) IFS= builtin read -r -d '' __ws_n; __ws_seen+="$__ws_n ";;
      end) __ws_end=1;;
      var|arr)
        IFS= builtin read -r -d '' __ws_n; IFS= builtin read -r -d '' __ws_a
        if [[ "$__ws_k" == arr ]]; then IFS= builtin read -r -d '' __ws_c; else IFS= builtin read -r -d '' __ws_v; fi
        [[ "$__ws_n" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || builtin continue
        case "$__ws_n" in KEPT) builtin continue;; esac
        __ws_seen+="$__ws_n "
        case "${!__ws_n@a}" in *r*) builtin continue;; *x*) __ws_x=1;; *) __ws_x=;; esac
        case "${!__ws_n@a}" in *n*) builtin unset -n "$__ws_n";; esac
        builtin unset -v "$__ws_n"  # its attributes too: an integer variable would evaluate what it is given
        if [[ "$__ws_k" == arr ]]; then
          builtin declare -g -a "$__ws_n=()"
          [[ "$__ws_c" =~ ^[0-9]{1,6}$ ]] || __ws_c=0
          for ((; __ws_c > 0; __ws_c--)); do
            IFS= builtin read -r -d '' __ws_i && IFS= builtin read -r -d '' __ws_v || builtin break
            [[ "$__ws_i" =~ ^[0-9]{1,9}$ ]] && builtin printf -v "$__ws_n[$__ws_i]" '%s' "$__ws_v"
          done
        elif [[ "$__ws_n" == PATH ]]; then
          __ws_p=
          while IFS= builtin read -r -d : __ws_e; do
            [[ -n "$__ws_e" && ":$__ws_p0:" == *":$__ws_e:"* ]] && __ws_p+="${__ws_p:+:}$__ws_e"
          done <<<"$__ws_v:"
          PATH=$__ws_p
        else
          builtin printf -v "$__ws_n" '%s' "$__ws_v"
        fi
        [[ -n "$__ws_x" && "$__ws_a" == *x* ]] && builtin export "$__ws_n";;
    esac
  done <"$__ws_dir/state"
  # what the cell unset (only from a whole list: a cell that ended half-way unset nothing)
  [[ -n "$__ws_end" ]] && for __ws_n in $(builtin compgen -A variable); do
    case "$__ws_n" in KEPT) builtin continue;; esac
    [[ "$__ws_seen" == *" $__ws_n "* || "${!__ws_n@a}" == *r* ]] || builtin unset -v "$__ws_n"
  done
  command rm -f -- "$__ws_dir/state"
  builtin return 0
}
""".replace("KEPT", _KEPT_NAMES)


def driver_script(nonce: str, flavour: str, state_dir: str, split: bool = False) -> str:
    """Shell functions that frame cells; sent once after the hello.  ``split``:
    the relay gave the shell a second pair of streams (fds 3 and 4) for isolated cells."""
    mark = f"\\0WS{nonce}:"
    STDOUT_FD, STDERR_FD = FDS[flavour]
    common = f"""
__ws_dir={shlex.quote(state_dir)}
mkdir -p "$__ws_dir" && chmod 700 "$__ws_dir"
rm -f "$__ws_dir/abort"
__ws_stdin= __ws_n=0
""" + owner_script(state_dir, nonce)
    if flavour == "bash":
        return common + f"""
exec {STDOUT_FD}>&{BOOT_OUT_FD} {STDERR_FD}>&{BOOT_ERR_FD} {BOOT_OUT_FD}>&- {BOOT_ERR_FD}>&-
exec {"52>&3 53>&4 3>&- 4>&-" if split else f"52>&{STDOUT_FD} 53>&{STDERR_FD}"}
set +o history +H; shopt -u checkwinsize 2>/dev/null
__ws_errs=
__ws_bg=
__ws_rc=
__ws_pre() {{
  __ws_errs=; __ws_stdin=$1
  # A syntax error inside `eval` in a `case` can leave bash 5.2's parser unable
  # to see reserved words; a syntax error in a throwaway `eval` resets it.
  builtin eval '{{ :; }}' 2>/dev/null || {{ builtin eval ';' 2>/dev/null || builtin :; }}
  # what an earlier cell changed must not stop this one's end or its interrupt
  builtin trap '__ws_on_err "$?" "$LINENO"' ERR; builtin trap '__ws_on_debug' DEBUG
  builtin trap - INT QUIT TERM RETURN; builtin set +T +E; builtin shopt -u extdebug
  # remember the jobs that exist before the cell, to stop only its own on interrupt
  [[ "${{!-}}" == "$__ws_bg" ]] || {{ __ws_bg=${{!-}}; builtin jobs -p >"$__ws_dir/jobs"; }}
}}
__ws_reap() {{
  builtin local p
  for p in $(builtin jobs -p); do
    grep -qx "$p" "$__ws_dir/jobs" 2>/dev/null || {{ builtin kill -TERM "$p"; pkill -TERM -P "$p"; }} 2>/dev/null
  done
  builtin printf '{mark}reaped\\0' >&{STDOUT_FD}
}}
__ws_post() {{
  builtin local st=${{__ws_rc:-$?}}; __ws_rc=
  builtin printf '{mark}end:%s.%s:%s:%s\\0' "$1" "$2" "$st" "$__ws_errs" >&{STDOUT_FD}
  builtin printf '{mark}end:%s.%s\\0' "$1" "$2" >&{STDERR_FD}
  __ws_errs=; __ws_stdin=
}}
__ws_l0=0
# The traps only call functions: a trap's text is parsed each time it runs, and
# a function call still parses when a cell has left bash's parser confused.
__ws_on_err() {{
  [[ "${{BASH_COMMAND#?__ws_}}" == "$BASH_COMMAND" ]] &&
    __ws_errs+="$(($2-__ws_l0+1)) $1 ${{BASH_COMMAND//[$'\\n\\t']/ }}"$'\\n'
  builtin return 0
}}
__ws_on_debug() {{
  # a cell that catches SIGINT still stops at its next command (the session
  # removes the abort flag once the cell has ended); a cell in a subshell of its own ends there
  if [[ "${{BASH_COMMAND#?__ws_}}" == "$BASH_COMMAND" && -e "$__ws_dir/abort" ]]; then
    if [[ $BASHPID != $$ ]]; then builtin exit 130; fi
    builtin kill -INT $$
  fi 2>/dev/null
}}
{_ISOLATION}builtin trap '__ws_on_err "$?" "$LINENO"' ERR
builtin trap '__ws_on_debug' DEBUG
read() {{
  case " $* " in *" -u"*) builtin read "$@"; builtin return;; esac
  if [[ -n "$__ws_stdin" && /dev/stdin -ef /dev/null ]]; then
    # a fresh FIFO per request: a late writer of an earlier answer cannot reach it
    __ws_n=$((__ws_n+1)); builtin local f="$__ws_dir/in.$__ws_n" st
    mkfifo "$f" || {{ builtin read "$@"; builtin return; }}
    builtin printf '{mark}in:%s:' "$__ws_n" >&{STDOUT_FD}; builtin printf '%s\\037' "$@" >&{STDOUT_FD}
    builtin printf '\\0' >&{STDOUT_FD}
    builtin read "$@" <"$f"; st=$?; rm -f "$f"; builtin return $st
  else
    builtin read "$@"
  fi
}}
__ws_complete() {{
  case "$1" in */*) ;; *) [[ "$2" = argument ]] || compgen -A command -- "$1" 2>/dev/null | head -n 300;; esac
  compgen -A file -- "$1" 2>/dev/null | head -n 300 | while IFS= read -r f; do
    if [ -d "$f" ]; then builtin printf '%s/\\n' "$f"; else builtin printf '%s\\n' "$f"; fi; done
  case "$1" in \\$*) compgen -A variable -P '$' -- "${{1#\\$}}" 2>/dev/null;; esac
}}
display() {{
  # display [FILE...]: show a picture (PNG, JPEG, GIF, SVG) or HTML in the notebook; none or -: stdin
  builtin local f st=0
  [[ $# -gt 0 ]] || builtin set -- -
  for f in "$@"; do
    if [[ "$f" != - && ( -d "$f" || ! -r "$f" ) ]]; then
      builtin printf 'display: %s: not a readable file\\n' "$f" >&2; st=1; builtin continue
    fi
    {{ builtin printf '{mark}display:'; base64 -- "$f"; builtin printf ':%s\\0' "$f"; }} >&{STDOUT_FD}
  done
  builtin return $st
}}
readonly -f __ws_pre __ws_post __ws_reap __ws_complete __ws_on_err __ws_on_debug __ws_sub __ws_leave __ws_join
readonly __ws_dir
builtin printf '{mark}ready\\0' >&{STDOUT_FD}
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
  case "$1" in */*) ;; *) [ "$2" = argument ] && return 0
    IFS=:; for d in $PATH; do for f in "$d/$1"*; do [ -x "$f" ] && printf '%s\\n' "${{f##*/}}"; done; done
    unset IFS;; esac
}}
display() {{
  __ws_st=0; [ $# -gt 0 ] || set -- -
  for __ws_f in "$@"; do
    if [ "$__ws_f" != - ] && {{ [ -d "$__ws_f" ] || [ ! -r "$__ws_f" ]; }}; then
      printf 'display: %s: not a readable file\\n' "$__ws_f" >&2; __ws_st=1; continue
    fi
    {{ printf '{mark}display:'; base64 "$__ws_f"; printf ':%s\\0' "$__ws_f"; }} >&{STDOUT_FD}
  done
  return $__ws_st
}}
printf '{mark}ready\\0' >&{STDOUT_FD}
"""


def new_token() -> str:
    return secrets.token_hex(8)


def cell_lines(code: str, seq: int, flavour: str, allow_stdin: bool, nonce: str, token: str,
               isolated: bool = False) -> str:
    """The command line that runs one cell and then prints its end marker.

    A leading backslash keeps a cell's aliases off the driver's names.  bash's
    driver functions are read-only; POSIX sh cannot protect a function, so there
    the end marker is written out in full and a cell cannot unset it.
    ``isolated``: the cell runs in a subshell and hands back only data (bash; see
    ``_ISOLATION``).
    """
    flag = "1" if allow_stdin else ""
    STDOUT_FD, STDERR_FD = FDS[flavour]
    if flavour == "bash":
        # No reserved word on the line: bash 5.2's parser may not see them until
        # __ws_pre has reset it (see there).
        run = f"builtin eval {quote_bash_line(code)}"
        if isolated:
            return (
                f"\\__ws_pre '{flag}'; __ws_l0=$LINENO; ( \\__ws_sub; {run} )"
                f" </dev/null >&52 2>&53; \\__ws_join; \\__ws_post {seq} {token}\n"
            )
        return (
            f"\\__ws_pre '{flag}'; __ws_l0=$LINENO; {run}"
            f" </dev/null >&{STDOUT_FD} 2>&{STDERR_FD}; \\__ws_post {seq} {token}\n"
        )
    # A POSIX sh (busybox ash, dash) abandons the whole command line on a syntax
    # error inside `eval`: there the end stands on a line of its own.
    return (
        f"\\__ws_pre '{flag}'; {{ \\eval {shlex.quote(code)}; }}"
        f" </dev/null >&{STDOUT_FD} 2>&{STDERR_FD}\n{_sh_post(seq, token, nonce)}\n"
    )


def fallback_line(seq: int, flavour: str, nonce: str, token: str) -> str:
    """The end of a cell whose command line an interrupt abandoned."""
    if flavour == "bash":
        return f"\\__ws_post {seq} {token}\n"
    return _sh_post(seq, token, nonce) + "\n"


def _sh_post(seq: int, token: str, nonce: str) -> str:
    STDOUT_FD, STDERR_FD = FDS["sh"]
    mark = f"\\0WS{nonce}:end:{seq}.{token}"
    return (
        f"__ws_st=$?; command printf '{mark}:%s:\\0' \"$__ws_st\" >&{STDOUT_FD}; "
        f"command printf '{mark}\\0' >&{STDERR_FD}; __ws_stdin="
    )


KINDS = frozenset({"hello", "ready", "end", "in", "reaped", "display"})


@dataclass
class Marker:
    kind: str  # "hello", "ready", "end", "in", "reaped", "display" (fields: base64 data, file name)
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
            body = buf[idx + len(prefix) : end].decode("utf-8", "replace")
            kind, _, rest = body.partition(":")
            if kind not in KINDS or buf.startswith(prefix, end):
                # Output that looks like the start of a marker (a cell may know the
                # nonce): not a marker when what it holds is none, or when its
                # closing NUL opens the next marker.  It stays output.
                items.append(buf[start:end])
                start = end
                continue
            if idx > start:
                items.append(buf[start:idx])
            fields = [rest] if kind == "in" else (rest.split(":", 1 if kind == "display" else 2) if rest else [])
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
