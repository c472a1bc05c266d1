"""What Tab offers in a cell: magics and their arguments, or the target's shell words.

On a line that starts with ``%`` the first word completes to magic names
(``%ta`` → ``%target``, ``%timeout``; ``%%ch`` → ``%%check``, ``%%chroot``) and
the words after it to what the magic's declared arguments accept
(:class:`workshop.arguments.MagicArguments`): options, their ``choices`` or
``completions``, subcommands, paths on the target.  Every other line is shell:
the target's own shell completes commands, paths and ``$VARIABLES``.

The reply is the Jupyter ``complete_reply`` content; ``cursor_start`` and
``cursor_end`` are offsets into the whole cell, as JupyterLab and the console
send it.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import magics
from .arguments import FILES
from .cell import RAW_ARGUMENTS

log = logging.getLogger(__name__)
# Characters that end a shell word for completion purposes.
WORD_BREAK = re.compile(r"[\s;|&<>()`'\"=]")

ShellWords = Callable[..., list[str]]  # (token, command=False) -> the target shell's completions of it
# What ends a command, so that the next word is one; and words after which a command follows.
_COMMAND_ENDS = re.compile(r"(?:;|&&|\|\||\||&|\(|\$\(|`|\{|!|\b(?:then|do|else|elif|if|while|until)\b)\s*$")
_PREFIXES = {"sudo", "exec", "nohup", "time", "env", "command", "builtin", "xargs", "nice", "setsid", "chroot"}


@dataclass
class Matches:
    words: list[str] = field(default_factory=list)
    kind: str = ""  # a Jupyter completion type (magic, option, path...); "" for shell words


def complete(code: str, cursor: int, shell_words: ShellWords) -> dict:
    """The ``complete_reply`` content for ``code`` with the cursor at ``cursor``."""
    cursor = max(0, min(cursor, len(code)))
    line_start = code.rfind("\n", 0, cursor) + 1
    line = code[line_start:cursor].lstrip()
    if line.startswith("%"):
        partial = re.split(r"\s", line)[-1]
        found = _magic_line(line, partial, shell_words)
    else:
        head = code[line_start:cursor]
        breaks = list(WORD_BREAK.finditer(head))
        partial = head[breaks[-1].end():] if breaks else head
        found = Matches(shell_words(partial, command=_command_position(head[:len(head) - len(partial)]))
                        if partial else [])
    start = cursor - len(partial)
    reply = {"status": "ok", "matches": found.words, "cursor_start": start, "cursor_end": cursor, "metadata": {}}
    if found.kind:  # JupyterLab shows the type next to each match
        reply["metadata"]["_jupyter_types_experimental"] = [
            {"start": start, "end": cursor, "text": word, "type": found.kind} for word in found.words]
    return reply


def _command_position(before: str) -> bool:
    """Whether a word after ``before`` (a line's text) is where a command is written:
    the line's first word, after ``;``, ``|``, ``&&``, ``$(``, ``then``..., after
    assignments and after ``sudo``, ``env``, ``time``...; else an argument, which bash
    completes to files only."""
    words: list[str] = []
    for word in before.split():
        words.append(word)
        if _COMMAND_ENDS.search(word):
            words = []
    words = [w for w in words if not re.fullmatch(r"[A-Za-z_]\w*=\S*", w) and w not in _PREFIXES]
    return not words


def _magic_line(line: str, partial: str, shell_words: ShellWords) -> Matches:
    words = line.split()
    if not words or (len(words) == 1 and partial):  # still writing the magic's name
        return Matches(_magic_names(partial), "magic")
    written = words[0]
    cell = written.startswith("%%")
    name = written.lstrip("%")
    found = {m.cell: m for m in magics.forms(name)}
    magic = found.get(cell) or next(iter(found.values()), None)
    if magic is None:
        return Matches()
    before = words[1:-1] if partial else words[1:]
    if magic.name in RAW_ARGUMENTS:  # one raw argument (a regex is not shell words)
        positional = next(a for a in magic.arguments._actions if not a.option_strings)
        return _values(positional, before, partial, shell_words)
    return _arguments(magic.arguments, before, partial, shell_words)


def _magic_names(partial: str) -> list[str]:
    """``%x`` offers line magics and, written ``%%``, the cell magics; ``%%x`` cell magics only."""
    cell_only = partial.startswith("%%")
    stem = partial.lstrip("%")
    every = magics.all_magics()
    names = [f"%{m.name}" for m in every if not m.cell and not cell_only]
    names += [f"%%{m.name}" for m in every if m.cell]
    return [name for name in names if name.lstrip("%").startswith(stem)]


def _arguments(parser: argparse.ArgumentParser, before: list[str], partial: str,
               shell_words: ShellWords) -> Matches:
    actions = parser._actions
    subcommands = next((a for a in actions if isinstance(a, argparse._SubParsersAction)), None)
    if subcommands is not None:
        if not before:
            return Matches([c for c in subcommands.choices if c.startswith(partial)], "keyword")
        child = subcommands.choices.get(before[0])
        return _arguments(child, before[1:], partial, shell_words) if child else Matches()
    by_flag = {flag: a for a in actions for flag in a.option_strings}
    if partial.startswith("-"):
        used = {id(by_flag[w]) for w in before if w in by_flag}
        flags = [flag for a in actions if id(a) not in used for flag in sorted(a.option_strings, key=len)]
        return Matches([f for f in flags if f.startswith(partial)], "option")
    if before and before[-1] in by_flag and by_flag[before[-1]].nargs != 0:  # the value of an option
        return _values(by_flag[before[-1]], before, partial, shell_words)
    index = _positionals_written(before, by_flag)
    positionals = [a for a in actions if not a.option_strings]
    if index < len(positionals):
        return _values(positionals[index], before, partial, shell_words)
    return Matches()


def _positionals_written(before: list[str], by_flag: dict[str, argparse.Action]) -> int:
    count, skip = 0, False
    for word in before:
        if skip:
            skip = False
        elif word.startswith("-"):
            action = by_flag.get(word)
            skip = action is not None and action.nargs != 0
        else:
            count += 1
    return count


def _values(action: argparse.Action, before: list[str], partial: str, shell_words: ShellWords) -> Matches:
    """What ``action`` accepts that starts with ``partial``, from its declaration."""
    offered: Sequence[str] | str | None = getattr(action, "completions", None) or action.choices
    if offered == FILES:
        return Matches(_paths(partial, shell_words), "path")
    if callable(offered):
        try:
            offered = offered(before)
        except Exception:  # a Tab key must never cost the student an error
            log.warning("completing %s failed", action.dest, exc_info=True)
            offered = ()
    return Matches([w for w in dict.fromkeys(offered or ()) if w.startswith(partial)], "keyword")


def _paths(partial: str, shell_words: ShellWords) -> list[str]:
    """Paths only: a word without a slash would also complete to commands."""
    if "/" in partial or partial.startswith("~"):
        return [w for w in shell_words(partial) if "/" in w]
    return [w.removeprefix("./") for w in shell_words("./" + partial)]
