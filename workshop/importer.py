"""Import a docable-style Markdown workshop as a notebook for this kernel.

docable marks runnable fences with an attribute block after a ``|``::

    ```bash | {type: 'command', failed_when: 'exitCode != 0'}
    ls /
    ```

    ```bash | {type: 'file', path: 'hello.sh', permission: '+x'}
    echo hello
    ```

The block is a JavaScript object literal (unquoted keys, single- or
double-quoted strings).  The importer turns prose into Markdown cells,
``command`` fences into code cells, ``file`` fences into ``%%file`` cells and
``failed_when`` expressions into ``%expect`` lines where they map:

====================================  ===================================
``exitCode != N``                     ``%expect exit N``
``!stdout.includes("x")``             ``%expect stdout-contains x``
``!stderr.includes("x")``             ``%expect stderr-contains x``
``!stdout.match(/re/i)``, ``!/re/.test(stdout)``  ``%expect stdout /re/i``
``stderr.length > 0``, ``stderr != ""``           ``%expect stderr empty``
``A || B``                            both of the above
====================================  ===================================

A command without ``failed_when`` gets docable's own rule: exit status 0 and
nothing on stderr.  What does not map (``&&``, negated checks, other fields
such as ``variables`` or ``privileged``, other cell types) is kept visible: a
comment at the top of the code cell or a Markdown note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import quick_nbformat  # noqa: F401 (first: it makes importing nbformat quick)

# isort: split
import nbformat

from .errors import ImporterError
from .language import LANGUAGE_INFO

KERNELSPEC = {"display_name": "Workshop (bash)", "language": "bash", "name": "workshop"}
NOTE = "**Note (import):**"


# ---- JS-ish object literals --------------------------------------------------
class LiteralError(ImporterError):
    """A JavaScript-style object literal that cannot be read."""


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, what: str) -> LiteralError:
        return LiteralError(f"{what} at column {self.pos + 1} of {self.text!r}")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == quote:
                return "".join(out)
            if c == "\\":
                if self.pos >= len(self.text):
                    break
                e = self.text[self.pos]
                self.pos += 1
                if e == "u" and re.match(r"[0-9a-fA-F]{4}", self.text[self.pos:self.pos + 4]):
                    out.append(chr(int(self.text[self.pos:self.pos + 4], 16)))
                    self.pos += 4
                elif e == "\n":
                    pass
                else:
                    out.append(_ESCAPES.get(e, e))
            else:
                out.append(c)
        raise self.error("unterminated string")

    def word(self) -> str:
        match = re.compile(r"[A-Za-z_$][\w$-]*|-?\d+(?:\.\d+)?").match(self.text, self.pos)
        if not match:
            raise self.error("expected a name or a value")
        self.pos = match.end()
        return match.group()

    def value(self):
        c = self.peek()
        if not c:
            raise self.error("expected a value, found the end")
        if c in "'\"`":
            return self.string()
        if c == "{":
            return self.obj()
        if c == "[":
            self.pos += 1
            items = []
            while self.peek() != "]":
                if not self.peek():
                    raise self.error("unterminated list")
                items.append(self.value())
                if self.peek() == ",":
                    self.pos += 1
            self.pos += 1
            return items
        word = self.word()
        if word in ("true", "false"):
            return word == "true"
        if word in ("null", "undefined"):
            return None
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if re.fullmatch(r"-?\d+\.\d+", word):
            return float(word)
        return word

    def obj(self) -> dict:
        self.expect("{")
        result = {}
        while True:
            c = self.peek()
            if c == "}":
                self.pos += 1
                return result
            if not c:
                raise self.error("unterminated object")
            key = self.string() if c in "'\"" else self.word()
            self.expect(":")
            result[key] = self.value()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise self.error("expected ',' or '}'")


def parse_attributes(text: str) -> dict:
    """Parse a docable attribute block such as ``{type: 'file', path: "a b"}``."""
    reader = _Reader(text.strip())
    result = reader.obj()
    if reader.peek():
        raise reader.error("unexpected text after the object")
    return result


# ---- failed_when -> %expect -----------------------------------------------------
def _split_top(expr: str, op: str) -> list[str]:
    """Split ``expr`` on ``op`` outside quotes, parentheses and regex literals."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c == "/" and _regex_starts(expr, i):
            quote = "/"
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and expr.startswith(op, i):
            parts.append(expr[start:i])
            i += len(op)
            start = i
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def _regex_starts(expr: str, i: int) -> bool:
    before = expr[:i].rstrip()
    return not before or before[-1] in "(!,|&=:"


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")") and _split_top(expr[1:-1], ")") == [expr[1:-1].strip()]:
        inner = expr[1:-1]
        depth = 0
        for c in inner:
            depth += c == "("
            depth -= c == ")"
            if depth < 0:
                return expr
        expr = inner.strip()
    return expr


_STR = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)"""
_RE = r"/((?:[^/\\\n]|\\.)+)/([a-z]*)"


def _js_string(literal: str) -> str:
    return _Reader(literal).string()


def _regex_expect(stream: str, pattern: str, flags: str) -> str | None:
    kept = "".join(f for f in flags if f in "ims")
    try:
        re.compile(pattern)
    except re.error:
        return None
    return f"%expect {stream} /{pattern}/{kept}"


def _contains_expect(stream: str, text: str) -> str:
    if "\n" in text or text != text.strip() or (len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""):
        return f"%expect {stream} /{re.escape(text)}/"
    return f"%expect {stream}-contains {text}"


def _one_condition(cond: str) -> str | None:
    cond = _strip_parens(cond)
    m = re.fullmatch(r"exitCode\s*(?:!==?|<>)\s*(\d+)", cond) or re.fullmatch(r"(\d+)\s*!==?\s*exitCode", cond)
    if m:
        return f"%expect exit {int(m.group(1))}"
    if re.fullmatch(r"exitCode\s*>\s*0|exitCode", cond):
        return "%expect exit 0"
    m = re.fullmatch(r"!\s*(stdout|stderr)\s*\.\s*includes\s*\(\s*" + _STR + r"\s*\)", cond)
    if m:
        return _contains_expect(m.group(1), _js_string(m.group(2)))
    m = re.fullmatch(r"(stdout|stderr)\s*\.\s*indexOf\s*\(\s*" + _STR + r"\s*\)\s*(?:===?\s*-1|<\s*0)", cond)
    if m:
        return _contains_expect(m.group(1), _js_string(m.group(2)))
    m = re.fullmatch(r"!\s*(stdout|stderr)\s*\.\s*match\s*\(\s*" + _RE + r"\s*\)", cond)
    if m:
        return _regex_expect(m.group(1), m.group(2), m.group(3))
    m = re.fullmatch(r"!\s*" + _RE + r"\s*\.\s*test\s*\(\s*(stdout|stderr)\s*\)", cond)
    if m:
        return _regex_expect(m.group(3), m.group(1), m.group(2))
    m = re.fullmatch(r"(stdout|stderr)\s*\.\s*(?:trim\(\)\s*\.\s*)?length\s*(?:>\s*0|!==?\s*0)", cond)
    if m or re.fullmatch(r"(stdout|stderr)", cond):
        stream = (m or re.fullmatch(r"(stdout|stderr)", cond)).group(1)
        return f"%expect {stream} empty"
    m = re.fullmatch(r"(stdout|stderr)\s*!==?\s*(?:''|\"\")", cond)
    if m:
        return f"%expect {m.group(1)} empty"
    return None


def translate_failed_when(expr: str) -> tuple[list[str], list[str]]:
    """-> (%expect lines, the parts that did not map).

    ``failed_when`` says when a cell fails; an ``%expect`` says what must hold.
    A disjunction fails when any part holds, so each part becomes its own
    expectation; anything else that does not match a known shape is returned
    unmapped (and the importer says so in the cell)."""
    expects, unmapped = [], []
    for part in _split_top(_strip_parens(expr), "||"):
        line = _one_condition(part) if part else None
        if line is None:
            unmapped.append(part)
        elif line not in expects:
            expects.append(line)
    return expects, unmapped


# ---- file permissions ------------------------------------------------------------
def file_mode(permission) -> str | None:
    """docable's ``permission`` as an octal mode for %%file, or None."""
    text = str(permission).strip()
    if re.fullmatch(r"0?[0-7]{3}", text):
        return text
    if re.fullmatch(r"[ugoa]*\+[rx]*x[rx]*", text) or text == "+x":
        return "755"
    if text in ("+r", "a+r", "ugo+r"):
        return "644"
    return None


# ---- Markdown -> cells ---------------------------------------------------------------
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")


@dataclass
class Block:
    kind: str  # "markdown" or "fence"
    text: str = ""
    lang: str = ""
    attrs_text: str | None = None  # the text after '|', when there is one
    raw: str = ""
    line: int = 0


def split_markdown(text: str) -> list[Block]:
    """Prose and fenced code blocks, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or (m.group("fence")[0] == "`" and "`" in m.group("info")):
            prose.append(lines[i])
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        info = m.group("info").strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = re.match(r"^ {0,3}(`{3,}|~{3,})\s*$", lines[i])
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                break
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line)
            i += 1
        i += 1  # the closing fence (or the end of the file)
        lang, bar, attrs = info.partition("|")
        if not bar:
            prose.extend(lines[start:i])
            continue
        if prose:
            blocks.append(Block("markdown", "\n".join(prose)))
            prose = []
        blocks.append(Block("fence", "\n".join(body), lang.strip(), attrs.strip(), "\n".join(lines[start:i]), start + 1))
    if prose:
        blocks.append(Block("markdown", "\n".join(prose)))
    return blocks


@dataclass
class Converted:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)  # what did not map, for the command line


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


COMMAND_KEYS = {"type", "failed_when", "success_message", "failure_message", "shell", "stream", "block", "id"}
FILE_KEYS = {"type", "path", "permission", "block", "id", "mode"}


def _comment(why: str) -> str:
    """An import note as a shell comment at the top of a code cell."""
    return f"# {NOTE[2:-2]} {why}"


def _shell_word(text: str) -> str:
    """``text`` as one shell word, quoted only when it needs to be."""
    return _q(text) if re.search(r"[^\w@%+=:,./-]", text) else text


def _fence_for(raw: str) -> str:
    """A backtick fence longer than any run of backticks inside ``raw``."""
    return "`" * max(3, max((len(r) for r in re.findall(r"`+", raw)), default=0) + 1)


class _NotebookBuilder:
    """The notebook being built, the notes for the command line and the cell counter."""

    def __init__(self, target: str, source: str):
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata = {
            "kernelspec": dict(KERNELSPEC),
            "language_info": dict(LANGUAGE_INFO),
            "workshop": {"target": target, "imported_from": Path(source).name},
        }
        self.notes: list[str] = []
        self.count = 0

    def finish(self) -> Converted:
        nbformat.validate(self.nb)
        return Converted(self.nb, self.notes)

    # ---- cells and notes
    def _cell_id(self, kind: str) -> str:
        self.count += 1
        return f"{kind}-{self.count:03d}"

    def _code(self, source: str, kind: str) -> None:
        self.nb.cells.append(nbformat.v4.new_code_cell(source, id=self._cell_id(kind)))

    def _report(self, block: Block, why: str) -> str:
        """Record ``why`` for the command line; -> ``why``."""
        self.notes.append(f"line {block.line}: {why}")
        return why

    def _dropped_options(self, block: Block, attrs: dict, known: set[str]) -> list[str]:
        """Report each docable option outside ``known``; -> the reasons."""
        return [self._report(block, f"docable option {key}={attrs[key]!r} is not supported here and was dropped")
                for key in sorted(set(attrs) - known)]

    def markdown(self, body: str) -> None:
        if body.strip():
            self.nb.cells.append(nbformat.v4.new_markdown_cell(body.strip("\n"), id=self._cell_id("md")))

    def keep_as_note(self, block: Block, why: str) -> None:
        """Keep a block that was not imported as quoted text under a note."""
        self._report(block, why)
        fence = _fence_for(block.raw)
        self.markdown(f"> {NOTE} {why}\n\n{fence}\n{block.raw}\n{fence}")

    # ---- blocks
    def block(self, block: Block) -> None:
        if block.kind == "markdown":
            self.markdown(block.text)
            return
        try:
            attrs = parse_attributes(block.attrs_text or "{}")
        except LiteralError as exc:
            self.keep_as_note(block, f"the attribute block could not be read ({exc}); the cell was not imported")
            return
        kind = attrs.get("type", "command")
        if kind == "command":
            self.command(block, attrs)
        elif kind == "file":
            self.file(block, attrs)
        else:
            self.keep_as_note(block, f"docable cell type {kind!r} has no equivalent here; kept as text")

    def command(self, block: Block, attrs: dict) -> None:
        expects, comments = self._expects(block, attrs.get("failed_when"))
        comments += [_comment(why) for why in self._dropped_options(block, attrs, COMMAND_KEYS)]
        shell = attrs.get("shell")
        if shell not in (None, "bash", "sh"):
            comments.append(_comment(f"docable ran this with shell {shell!r}; it runs in the kernel's shell"))
        self._code("\n".join(expects + comments + [block.text]).rstrip("\n"), "cmd")

    def _expects(self, block: Block, failed_when) -> tuple[list[str], list[str]]:
        """-> (%expect lines, comments on what did not map) for a command's ``failed_when``."""
        if failed_when is None:
            return ["%expect exit 0", "%expect stderr empty"], []  # docable's default rule
        expects, unmapped = translate_failed_when(str(failed_when))
        if not unmapped:
            return expects, []
        why = self._report(block, f"failed_when {failed_when!r} has no %expect form for: {' || '.join(unmapped)}")
        return expects, [_comment(f"{why}; check it by hand or add a %%check")]

    def file(self, block: Block, attrs: dict) -> None:
        path = attrs.get("path")
        if not path:
            self.keep_as_note(block, "a file cell without a path; not imported")
            return
        whys = self._dropped_options(block, attrs, FILE_KEYS)
        mode = self._mode(block, attrs.get("permission"), whys)
        body = block.text + "\n"
        if attrs.get("mode") == "append":
            self._append_file(str(path), body, mode, whys)
        else:
            self._write_file(str(path), body, mode, whys)

    def _mode(self, block: Block, permission, whys: list[str]) -> str | None:
        """The octal mode for ``permission``; a permission without one adds to ``whys``."""
        if permission is None:
            return None
        mode = file_mode(permission)
        if mode is None:
            whys.append(self._report(block, f"permission {permission!r} has no octal form; "
                                            "the file keeps its default mode"))
        return mode

    def _append_file(self, path: str, body: str, mode: str | None, whys: list[str]) -> None:
        code = [_comment(why) for why in whys] + [f"printf '%s' {_q(body)} >> {_q(path)}"]
        if mode:
            code.append(f"chmod {mode} {_q(path)}")
        self._code("\n".join(code), "file")

    def _write_file(self, path: str, body: str, mode: str | None, whys: list[str]) -> None:
        words = ["%%file", _shell_word(path)]
        if mode:
            words += ["--mode", mode]
        if whys:
            # %%file writes its whole body, so notes go to a Markdown cell before it.
            self.markdown("\n".join(f"> {NOTE} {why}" for why in whys))
        self._code(" ".join(words) + "\n" + body, "file")


def convert(text: str, target: str = "local", source: str = "README.md") -> Converted:
    """Convert docable-style Markdown into a notebook for the workshop kernel."""
    builder = _NotebookBuilder(target, source)
    for block in split_markdown(text):
        builder.block(block)
    return builder.finish()


def import_markdown(path: Path, out: Path | None = None, target: str = "local") -> tuple[Path, list[str]]:
    """Convert the Markdown file at ``path``; write the notebook; -> (path written, notes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImporterError(f"{path}: {exc.strerror or exc}") from None
    converted = convert(text, target=target, source=str(path))
    out = out or path.with_suffix(".ipynb")
    nbformat.write(converted.notebook, str(out))
    return out, converted.notes
