"""Declared arguments for magics: argparse that raises instead of exiting.

A magic declares its arguments once on a :class:`MagicArguments` parser; the
usage line that ``%lsmagic``, ``%help`` and every error show is made from that
declaration, so they cannot drift from what the parser accepts; so are the
argument lines of ``%help`` (from each argument's ``help``) and what Tab offers
(an argument's ``choices``, or its ``completions``: words, a function of the
words before, or :data:`FILES` for a path on the target).  Errors are a
:class:`MagicError` with one plain sentence and the usage, never a
``SystemExit``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence

from .errors import MagicError

# An argument's ``completions``: fixed words, a function of the words written
# before it, or FILES (a path on the target, completed by its shell).
Completions = Sequence[str] | Callable[[list[str]], Sequence[str]] | str
FILES = "files"

# argparse's wording, said the way the rest of workshop says things
_REWORDS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"argument (\S+?)(?:/\S+)?: expected one argument"), lambda m: f"{m[1]} needs a value"),
    (re.compile(r"argument (\S+?)(?:/\S+)?: ignored explicit argument '(.)"), lambda m: f"unknown option -{m[2]}"),
    (re.compile(r"argument (\S+?)(?:/\S+)?: not allowed with argument (\S+?)(?:/\S+)?$"),
     lambda m: f"choose one of {m[2]} and {m[1]}"),
    (re.compile(r"the following arguments are required: (.*)"), lambda m: f"missing argument {m[1]}"),
    (re.compile(r"unrecognized arguments: (-\S*)"), lambda m: f"unknown option {m[1]}"),
    (re.compile(r"unrecognized arguments: (\S+)"), lambda m: f"unexpected argument {m[1]!r}"),
    (re.compile(r"argument (\S+?)(?:/\S+)?: invalid choice: '([^']*)'"), lambda m: f"{m[2]!r} is not a choice for {m[1]}"),
    # a value a type function refused: its own message says it all
    (re.compile(r"^argument (\S+?)(?:/\S+)?: (.*)"), lambda m: f"{m[1]} {m[2]}" if m[2].startswith("takes ") else m[2]),
]


def _reword(message: str) -> str:
    for pattern, say in _REWORDS:
        match = pattern.search(message)
        if match:
            return say(match)
    return message


class MagicArguments(argparse.ArgumentParser):
    """An argument parser for one magic; ``prog`` is how it is written (``%%chroot``)."""

    def __init__(self, prog: str, **kwargs) -> None:
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(prog=prog, exit_on_error=False, **kwargs)

    def add_argument(self, *args, completions: Completions | None = None, **kwargs) -> argparse.Action:
        """argparse's add_argument, plus what Tab offers for the argument's value."""
        action = super().add_argument(*args, **kwargs)
        action.completions = completions  # type: ignore[attr-defined]
        return action

    # ---- parsing ---------------------------------------------------------
    def parse(self, args: Sequence[str]) -> argparse.Namespace:
        """Parse a magic's words; a MagicError with the usage when they do not fit."""
        try:
            return self.parse_args(list(args))
        except argparse.ArgumentError as exc:
            self.error(str(exc))
        raise AssertionError("unreachable")  # error() always raises

    def error(self, message: str):  # argparse calls this for every mistake
        raise self.usage_error(_reword(message))

    def usage_error(self, problem: str) -> MagicError:
        """A MagicError saying ``problem`` and showing the usage."""
        return MagicError(f"{problem}\nusage: {self.usage_line()}")

    # ---- the usage line, from the declaration ------------------------------
    def usage_line(self) -> str:
        subcommands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        if subcommands:
            return " | ".join(child.usage_line() for child in subcommands[0].choices.values())
        grouped = {id(a): g for g in self._mutually_exclusive_groups for a in g._group_actions}
        words = [self.prog]
        words += [_positional(a) for a in self._actions if not a.option_strings]
        letters = [a for a in self._actions if _is_letter_flag(a) and id(a) not in grouped]
        if letters:
            words.append("[-" + "".join(a.option_strings[0][1] for a in letters) + "]")
        done: set[int] = set()
        for action in self._actions:
            if not action.option_strings or action in letters or id(action) in done:
                continue
            group = grouped.get(id(action))
            members = group._group_actions if group else [action]
            done.update(id(a) for a in members)
            words.append("[" + "|".join(_optional(a) for a in members) + "]")
        return " ".join(words)

    # ---- the argument lines of %help, from the declaration ------------------
    def argument_lines(self) -> list[tuple[str, str]]:
        """(how an argument is written, its help) for each declared argument;
        subcommands are listed by their usage."""
        lines = []
        for action in self._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                lines += [(child.usage_line(), helps.get(name, "")) for name, child in action.choices.items()]
            elif action.option_strings:
                flags = ", ".join(sorted(action.option_strings, key=len))
                value = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
                lines.append((flags + value, action.help or ""))
            else:
                lines.append((_positional(action), action.help or ""))
        return lines


def _is_letter_flag(action: argparse.Action) -> bool:
    first = action.option_strings[0] if action.option_strings else ""
    return len(first) == 2 and first[0] == "-" and first[1] != "-" and action.nargs == 0


def _positional(action: argparse.Action) -> str:
    name = action.metavar or action.dest.upper()
    return f"[{name}]" if action.nargs == "?" else name


def _optional(action: argparse.Action) -> str:
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        return flag
    return f"{flag} {action.metavar or action.dest.upper()}"
