"""What Shift-Tab shows for the word at the cursor, and where the manual is.

A magic (``%%chroot``, or anything on a magic's line) answers with its
``%help`` text.  A shell word is asked of the target's own shell, as the
student's cells would see it: ``type WORD``, then bash's ``help WORD`` for a
builtin or keyword, else the first lines of ``man -P cat WORD``, else of
``WORD --help``.  The lookup runs in a subshell (nothing in the student's
shell changes), reads no input, and is cut short after a few seconds and a
few dozen lines; ``--help`` runs only programs of the system's own bin
directories, never one a student wrote, and never those that stop the machine.
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from . import magics
from .completion import WORD_BREAK
from .magics.help import help_text

if TYPE_CHECKING:
    from .session import Session

# What the shell prints for WORD, in a subshell: nothing when it is no command.
# Every command goes through `command`: the student's functions and aliases
# named type, head, man... must not run in their place.
_LOOKUP = """(
w={word}; n={lines}
command type "$w" >/dev/null 2>&1 || exit 0
command type "$w" 2>&1 | command head -n 20
case $(command type -t "$w" 2>/dev/null) in
  builtin|keyword) command echo; command help "$w" 2>&1 | command head -n "$n"; exit 0;;
esac
p=$(command -v "$w" 2>/dev/null)
case $p in /*) ;; *) exit 0;; esac
command -v timeout >/dev/null 2>&1 || exit 0
m=
if command -v man >/dev/null 2>&1; then
  m=$(MANWIDTH=80 command timeout -s KILL 3 man -P cat "$w" </dev/null 2>/dev/null | command head -n "$n")
fi
[ -n "$m" ] && {{ command echo; command printf '%s\\n' "$m"; exit 0; }}
case $p in /bin/*|/sbin/*|/usr/bin/*|/usr/sbin/*|/usr/local/bin/*|/usr/local/sbin/*) ;; *) exit 0;; esac
case ${{p##*/}} in reboot|halt|poweroff|shutdown|init|telinit|kexec|systemctl) exit 0;; esac
command echo; command timeout -s KILL 2 "$p" --help </dev/null 2>&1 | command head -n "$n"
)"""
_OVERSTRIKE = re.compile(r".\x08|\x1b\[[0-9;]*m")  # bold and underline as man and groff write them
LOOKUP_SECONDS = 8  # the whole lookup, after which the shell's command is interrupted
SHORT, LONG = 25, 200  # lines of help, man or --help for detail levels 0 and 1

# The README sections a student looks for from the Help menu.
HELP_SECTIONS = ("Magics", "Checks and grading", "The shell", "Where cells run", "Records", "Known limits",
                 "For instructors")


def inspect(code: str, cursor: int, detail_level: int, session: Session) -> dict:
    """The ``inspect_reply`` content for the word at ``cursor`` in ``code``."""
    cursor = max(0, min(cursor, len(code)))
    line_start = code.rfind("\n", 0, cursor) + 1
    line_end = code.find("\n", cursor)
    line = code[line_start:len(code) if line_end < 0 else line_end]
    if line.lstrip().startswith("%"):
        text = _magic_help(line, cursor - line_start)
    else:
        word = _word_at(line, cursor - line_start)
        text = _shell_help(session, word, LONG if detail_level else SHORT) if word else ""
    found = bool(text.strip())
    return {"status": "ok", "found": found, "data": {"text/plain": text} if found else {}, "metadata": {}}


def _word_at(line: str, column: int) -> str:
    start = column
    while start > 0 and not WORD_BREAK.match(line[start - 1]):
        start -= 1
    end = column
    while end < len(line) and not WORD_BREAK.match(line[end]):
        end += 1
    return line[start:end]


def _magic_help(line: str, column: int) -> str:
    """The help of the magic on ``line``; on ``%help NAME``'s NAME, that of NAME."""
    words = line.split()
    written = words[0]
    name = written.lstrip("%")
    if name == "help" and len(words) > 1 and column > line.index(words[1]):
        name = words[1].lstrip("%")
    found = magics.forms(name)
    found.sort(key=lambda m: m.cell != written.startswith("%%"))  # the form written first
    return "\n".join(help_text(magic) for magic in found)


def _shell_help(session: Session, word: str, lines: int) -> str:
    """What the target's shell says about ``word``; "" when it is no command there."""
    found = session.ask(_LOOKUP.format(word=shlex.quote(word), lines=lines), timeout=LOOKUP_SECONDS)
    return _OVERSTRIKE.sub("", found).strip("\n") + "\n" if found.strip() else ""


@functools.cache
def help_links() -> list[dict[str, str]]:
    """Links to the README's sections for the frontend's Help menu: on the
    project's web page when the package names one (``url`` or ``project_urls``
    in setup.cfg), else the README on this machine, when it is there."""
    base = _project_url()
    if base is None:
        readme = Path(__file__).resolve().parent.parent / "README.md"
        if not readme.is_file():
            return []
        base = readme.as_uri()
    return [{"text": f"Workshop: {title}", "url": f"{base}#{anchor(title)}"} for title in HELP_SECTIONS]


def anchor(title: str) -> str:
    """The anchor GitHub and most Markdown renderers give a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _project_url() -> str | None:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        meta = metadata("workshop")
    except PackageNotFoundError:
        return None
    urls = [entry.partition(",")[2].strip() for entry in meta.get_all("Project-URL") or []]
    home = meta.get("Home-page")
    found = [url for url in [*urls, home] if url and url.startswith(("http://", "https://"))]
    return found[0].split("#")[0] if found else None
