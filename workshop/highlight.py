"""Highlighting of the kernel's cells for Pygments (nbconvert's HTML and LaTeX).

The kernel's ``language_info`` names the lexer ``workshop``; the package registers
:class:`WorkshopLexer` under that name through the ``pygments.lexers`` entry point.
It reads a cell as JupyterLab's mode does (``labextension/index.js``): magic lines
at the top, and ``%%check`` lines below the body, are tokens of their own (the
magic's name, its options, its arguments as written: an apostrophe in
``%expect stdout-contains container's`` opens no string); the shell between them
is bash's, lexed afresh after each magic line, so that nothing above one goes on
below it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pygments.lexer import Lexer
from pygments.lexers.shell import BashLexer
from pygments.token import Name, String, Text, _TokenType

MAGIC = re.compile(r"\s*%%?[A-Za-z_][\w-]*")
CHECK = re.compile(r"\s*%%check(\s|$)")
_PARTS = re.compile(r"(?P<space>\s+)|(?P<option>--?[\w-]+)|(?P<word>\S+)")


class WorkshopLexer(Lexer):
    name = "Workshop (bash with magics)"
    aliases = ["workshop"]
    filenames: list[str] = []
    mimetypes = ["text/x-workshop"]

    def get_tokens_unprocessed(self, text: str) -> Iterator[tuple[int, _TokenType, str]]:
        shell_from = 0  # where the shell lines not yet lexed begin
        offset, body = 0, False
        for line in text.splitlines(keepends=True):
            if (CHECK if body else MAGIC).match(line):
                yield from self._shell(text[shell_from:offset], shell_from)
                yield from _magic(line, offset)
                shell_from, body = offset + len(line), False
            elif line.strip():
                body = True
            offset += len(line)
        yield from self._shell(text[shell_from:], shell_from)

    def _shell(self, code: str, start: int) -> Iterator[tuple[int, _TokenType, str]]:
        if code:
            for index, token, value in BashLexer(**self.options).get_tokens_unprocessed(code):
                yield start + index, token, value


def _magic(line: str, start: int) -> Iterator[tuple[int, _TokenType, str]]:
    """A magic line: its name, then options and arguments, words as written."""
    name = MAGIC.match(line)
    assert name is not None
    lead = len(line) - len(line.lstrip())
    if lead:
        yield start, Text.Whitespace, line[:lead]
    yield start + lead, Name.Decorator, line[lead:name.end()]
    for part in _PARTS.finditer(line, name.end()):
        kind = part.lastgroup
        token = Text.Whitespace if kind == "space" else Name.Attribute if kind == "option" else String.Other
        yield start + part.start(), token, part.group()
