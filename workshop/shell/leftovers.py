"""What a dead kernel left on its target, found and removed by the next one.

Every shell the session starts keeps a state directory on the target
(``/tmp/.workshop-<nonce>``) with an ``owner`` line (the shell's pid, its start
time and the boot id, so a reused pid or a reboot is not mistaken for it), a
``user`` line (whose it is: the uid that ran ``sudo``, else the shell's own; a
file of its own, since kernels of earlier versions read the owner line whole) and a
``cleanups/`` folder: one file per thing its magics made (a mount, a cgroup),
holding the shell code that undoes it.  Every process the shell starts inherits
``WORKSHOP_SESSION=<nonce>``.

A kernel killed with ``kill -9`` cannot clean up, so each shell has a warden
(:func:`warden_command`): a process beside the shell, on the target, that
waits for EOF on a pipe only the kernel writes to.  The kernel's death (or a
dropped SSH connection) closes that pipe, and the warden ends the session: it
kills the processes of that session and the shell, runs its cleanups newest
first and removes the directory.  A kernel that closes its shell itself removes
the directory first, and the warden then has nothing to do.

Should the warden be gone too, :func:`sweep_script` does the same for every
state directory whose shell or warden is gone, also while an orphaned command
of it still runs; only those of the same user: another user's leftovers are
theirs to be told about, by their next kernel.  Run with ``dry_run`` it only
reports, every user's (``workshop doctor``).  Each line it prints is
``<nonce><TAB><what>``.
"""

from __future__ import annotations

import shlex

STATE_PREFIX = ".workshop-"
SESSION_VARIABLE = "WORKSHOP_SESSION"

# Whose a shell is: a shell run through sudo (a VM's, an ssh target's with sudo) is
# root for everyone, so the user who ran sudo counts.
USER_ID = "${SUDO_UID:-$(id -u)}"


def owner_script(state_dir: str, nonce: str) -> str:
    """Driver lines: mark the state directory as this shell's, and every
    process it starts as this session's."""
    d = shlex.quote(state_dir)
    return (
        f"mkdir -p {d}/cleanups; "
        f"printf '%s %s %s\\n' \"$$\" \"$(cut -d' ' -f22 /proc/$$/stat 2>/dev/null)\" "
        f"\"$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)\" > {d}/owner; "
        f"printf '%s\\n' \"{USER_ID}\" > {d}/user; "
        f"export {SESSION_VARIABLE}={shlex.quote(nonce)}\n"
    )


# Shell functions for the scripts below: whether PID is the process that
# started at START (a reused pid is not), and not a zombie.
_SAME = (
    "__ws_same() { [ -r \"/proc/$1/stat\" ] && "
    "[ \"$(cut -d' ' -f22 \"/proc/$1/stat\" 2>/dev/null)\" = \"$2\" ] && "
    "[ \"$(cut -d' ' -f3 \"/proc/$1/stat\" 2>/dev/null)\" != Z ]; }\n"
    "__ws_gone() { [ ! -r \"/proc/$1/stat\" ] || [ \"$(cut -d' ' -f3 \"/proc/$1/stat\" 2>/dev/null)\" = Z ]; }\n"
)


def _end_session(act: str) -> str:
    """Shell code that ends the session ``$n`` whose state directory is ``$d``
    (only reports when ``act`` is empty): its processes, its shell, then what
    its magics made, newest first, then the directory."""
    return f"""
  boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
  killed=
  for e in /proc/[0-9]*/environ; do
    p=${{e#/proc/}}; p=${{p%/environ}}
    tr '\\0' '\\n' < "$e" 2>/dev/null | grep -qx "{SESSION_VARIABLE}=$n" || continue
    printf '%s\\tprocess %s: %s\\n' "$n" "$p" "$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | cut -c1-80)"
    [ -n "{act}" ] && kill -KILL "$p" 2>/dev/null && killed="$killed $p"
  done
  # the shell itself: its environment predates the variable
  if read -r pid start was < "$d/owner" && [ "$was" = "$boot" ] && __ws_same "$pid" "$start"; then
    printf '%s\\tthe shell (process %s)\\n' "$n" "$pid"
    [ -n "{act}" ] && kill -KILL "$pid" 2>/dev/null && killed="$killed $pid"
  fi
  # a mount or a cgroup still in use by them cannot be removed: let them go first
  i=0
  while [ -n "$killed" ] && [ $i -lt 100 ]; do
    left=; for p in $killed; do __ws_gone "$p" || left="$left $p"; done
    killed=$left; [ -n "$killed" ] && sleep 0.05; i=$((i+1))
  done
  for c in $(ls -r "$d/cleanups" 2>/dev/null); do
    what=$(head -n 1 "$d/cleanups/$c" | sed 's/^# //')
    if [ -z "{act}" ]; then printf '%s\\t%s\\n' "$n" "$what"
    elif sh "$d/cleanups/$c" >/dev/null 2>&1; then printf '%s\\tremoved %s\\n' "$n" "$what"
    else printf '%s\\tcould not remove %s\\n' "$n" "$what"; fi
  done
  if [ -n "{act}" ]; then rm -rf "$d"; else printf '%s\\tstate directory %s\\n' "$n" "$d"; fi
"""


def warden_command(state_dir: str, nonce: str) -> str:
    """The command of a shell's warden (see the module docstring): its stdin is
    the pipe the kernel holds and never writes to."""
    script = (
        'd=$1 n=$2; exec >/dev/null 2>&1\n' + _SAME
        # so that a sweep can tell a session whose warden was killed as well
        + 'printf "%s %s\\n" "$$" "$(cut -d" " -f22 /proc/$$/stat)" > "$d/warden"\n'
        + 'while IFS= read -r _; do :; done\n'
        + '[ -d "$d" ] || exit 0  # the kernel ended the session itself\n'
        + _end_session("1")
    )
    return f"exec sh -c {shlex.quote(script)} workshop-warden {shlex.quote(state_dir)} {shlex.quote(nonce)}"


def sweep_script(state_root: str = "/tmp", dry_run: bool = False, skip: str = "") -> str:
    """Shell code that cleans (or with ``dry_run`` lists) what dead sessions left:
    those whose shell is gone, or whose warden is (their kernel is then gone too,
    or going: an orphaned command may still run)."""
    act = "" if dry_run else "1"
    return f"""(
{_SAME}boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
me={USER_ID}
for d in {shlex.quote(state_root)}/{STATE_PREFIX}*; do
  [ -f "$d/owner" ] || continue
  n=${{d##*/{STATE_PREFIX}}}
  [ "$n" = {shlex.quote(skip)} ] && continue
  read -r pid start was < "$d/owner" || continue
  # another user's: not ours to clean or report (a directory without a user file: anyone's)
  who=; [ -f "$d/user" ] && read -r who < "$d/user"
  [ -n "{act}" ] && [ -n "$who" ] && [ "$who" != "$me" ] && continue
  if [ "$was" = "$boot" ] && __ws_same "$pid" "$start"; then
    [ -f "$d/warden" ] || continue
    read -r wpid wstart < "$d/warden" && __ws_same "$wpid" "$wstart" && continue
  fi
{_end_session(act)}done
)"""


def parse_sweep(output: str) -> dict[str, list[str]]:
    """The sweep's report: per dead session, what it found or removed."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        nonce, tab, what = line.partition("\t")
        if tab:
            found.setdefault(nonce, []).append(what)
    return found
