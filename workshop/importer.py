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

import nbformat

from .errors import ImporterError

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


def convert(text: str, target: str = "local", source: str = "README.md") -> Converted:
    """Convert docable-style Markdown into a notebook for the workshop kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "bash"},
        "workshop": {"target": target, "imported_from": Path(source).name},
    }
    notes: list[str] = []
    counter = {"n": 0}

    def cell_id(kind: str) -> str:
        counter["n"] += 1
        return f"{kind}-{counter['n']:03d}"

    def markdown(body: str) -> None:
        if body.strip():
            nb.cells.append(nbformat.v4.new_markdown_cell(body.strip("\n"), id=cell_id("md")))

    def note(block: Block, why: str) -> None:
        notes.append(f"line {block.line}: {why}")
        fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", block.raw)), default=0) + 1)
        markdown(f"> {NOTE} {why}\n\n{fence}\n{block.raw}\n{fence}")

    for block in split_markdown(text):
        if block.kind == "markdown":
            markdown(block.text)
            continue
        try:
            attrs = parse_attributes(block.attrs_text or "{}")
        except LiteralError as exc:
            note(block, f"the attribute block could not be read ({exc}); the cell was not imported")
            continue
        kind = attrs.get("type", "command")
        comments: list[str] = []
        if kind == "command":
            lines: list[str] = []
            failed_when = attrs.get("failed_when")
            if failed_when is None:
                lines = ["%expect exit 0", "%expect stderr empty"]  # docable's default rule
            else:
                expects, unmapped = translate_failed_when(str(failed_when))
                lines = expects
                if unmapped:
                    why = f"failed_when {failed_when!r} has no %expect form for: {' || '.join(unmapped)}"
                    comments.append(f"# {NOTE[2:-2]} {why}; check it by hand or add a %%check")
                    notes.append(f"line {block.line}: {why}")
            for key in sorted(set(attrs) - COMMAND_KEYS):
                why = f"docable option {key}={attrs[key]!r} is not supported here and was dropped"
                comments.append(f"# {NOTE[2:-2]} {why}")
                notes.append(f"line {block.line}: {why}")
            if attrs.get("shell") not in (None, "bash", "sh"):
                comments.append(f"# {NOTE[2:-2]} docable ran this with shell {attrs['shell']!r}; it runs in the kernel's shell")
            source_lines = lines + comments + [block.text]
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(source_lines).rstrip("\n"), id=cell_id("cmd")))
        elif kind == "file":
            path = attrs.get("path")
            if not path:
                note(block, "a file cell without a path; not imported")
                continue
            for key in sorted(set(attrs) - FILE_KEYS):
                why = f"docable option {key}={attrs[key]!r} is not supported here and was dropped"
                comments.append(f"# {NOTE[2:-2]} {why}")
                notes.append(f"line {block.line}: {why}")
            body = block.text + "\n"
            permission = attrs.get("permission")
            mode = file_mode(permission) if permission is not None else None
            if permission is not None and mode is None:
                why = f"permission {permission!r} has no octal form; the file keeps its default mode"
                comments.append(f"# {NOTE[2:-2]} {why}")
                notes.append(f"line {block.line}: {why}")
            if attrs.get("mode") == "append":
                code = comments + [f"printf '%s' {_q(body)} >> {_q(str(path))}"]
                if mode:
                    code.append(f"chmod {mode} {_q(str(path))}")
                nb.cells.append(nbformat.v4.new_code_cell("\n".join(code), id=cell_id("file")))
                continue
            words = ["%%file", _q(str(path)) if re.search(r"[^\w@%+=:,./-]", str(path)) else str(path)]
            if mode:
                words += ["--mode", mode]
            if comments:
                # %%file writes its whole body, so notes go to a Markdown cell before it.
                markdown("\n".join(f"> {NOTE} {c[len('# Note (import): '):]}" for c in comments))
            nb.cells.append(nbformat.v4.new_code_cell(" ".join(words) + "\n" + body, id=cell_id("file")))
        else:
            note(block, f"docable cell type {kind!r} has no equivalent here; kept as text")
    nbformat.validate(nb)
    return Converted(nb, notes)


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
