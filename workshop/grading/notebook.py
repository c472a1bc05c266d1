"""Reading an untrusted notebook safely: plain JSON (not validated by nbformat, so that a class
of a thousand submissions grades in seconds), with bounds on what one file may cost.

Whatever a file is, the outcome is a notebook or a :class:`~workshop.errors.GradingError`
whose message is one sentence."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

from ..errors import GradingError
from ..records import RECORD_MIME
from .paths import display_path

MAX_NOTEBOOK_BYTES = 100 * 2**20  # larger files are refused unread: no real submission comes near
MAX_DEPTH = 64  # a notebook's JSON is about 10 levels deep; deeper is a file built to hurt a parser
# What one notebook may cost the grader: parsed JSON takes up to some 140 bytes per value, so the number of
# values (told by the commas and brackets, before parsing) bounds its memory (under 300 MB).  The shipped
# notebooks have under 100 cells and a few thousand values; `seq 1000000` in a cell saves a million lines.
MAX_CELLS = 10_000
MAX_JSON_VALUES = 2_000_000


def read_notebook_json(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES, *, name: str | None = None) -> dict:
    """Read a notebook as plain JSON with the checks that matter for grading.

    Whatever the file is, the outcome is a notebook or a GradingError whose
    message is one sentence: FIFOs and devices are refused without being
    opened for reading, huge files without being read, and numbers JSON cannot
    carry (1e400, NaN), nesting no notebook has, or objects of the wrong type
    where the grader reads are refused by name.  ``name``: what messages call
    the file (the submission a temporary copy was made of)."""
    shown = display_path(path)
    if shown != str(path) and name is None:
        raise GradingError(f"{shown}: the file name is not valid UTF-8; rename the file and grade it again")
    shown = name or shown
    return parse_notebook_json(_read_regular_file(Path(path), shown, max_bytes), shown, max_bytes)


def parse_notebook_json(data: bytes | str, shown: str, max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict:
    """A notebook held in memory (its JSON text), with the checks of :func:`read_notebook_json`;
    ``shown`` names it in messages."""
    data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(data) > max_bytes:
        raise GradingError(f"{shown}: over the {_mib(max_bytes)} limit for a notebook")
    return check_notebook(_parse_json(_bounded(data, shown), shown), shown)


def check_notebook(nb, shown: str) -> dict:
    """``nb`` (parsed JSON) when it is a notebook the grader can read; else a GradingError naming ``shown``."""
    problem = _format_problem(nb, shown) or _depth_problem(nb) or _structure_problem(nb)
    if problem:
        raise GradingError(f"{shown}: {problem}")
    if len(nb["cells"]) > MAX_CELLS:
        raise GradingError(f"{shown}: has {len(nb['cells']):,} cells, over the limit of {MAX_CELLS:,} for a notebook; "
                           "refused without grading it")
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel and kernel != "workshop":
        raise GradingError(f"{shown}: a notebook for the '{kernel}' kernel, not 'workshop'")
    return nb


_KINDS = [(stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket")]


def _read_regular_file(path: Path, shown: str, max_bytes: int) -> bytes:
    """The bytes of a regular file; anything else is refused before it is opened for reading."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise GradingError(f"{shown}: no such file") from None
    except OSError as exc:
        raise GradingError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise GradingError(f"{shown}: is a directory, not a notebook")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "special file")
        raise GradingError(f"{shown}: is a {kind}, not a notebook file; refused without reading it")
    if info.st_size > max_bytes:
        raise GradingError(f"{shown}: {_mib(info.st_size)} is over the {_mib(max_bytes)} limit for a notebook; "
                           "refused without reading it")
    try:
        # O_NONBLOCK: should the file have been swapped for a FIFO since stat(), open() still returns
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise GradingError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise GradingError(f"{shown}: the file changed while it was opened; grade it again")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise GradingError(f"{shown}: over the {_mib(max_bytes)} limit for a notebook")
    return data


def _bounded(data: bytes, shown: str) -> bytes:
    """``data``, when parsing it costs the grader a bounded amount of memory and time.

    Counted in the bytes, unparsed: every cell has one ``"cell_type"`` key (the
    text cannot occur inside a JSON string, where quotes are escaped), and
    every value but the first follows a comma or opens a bracket."""
    cells = data.count(b'"cell_type"')
    if cells > MAX_CELLS:
        raise GradingError(f"{shown}: has {cells:,} cells, over the limit of {MAX_CELLS:,} for a notebook; "
                           "refused without grading it")
    values = data.count(b",") + data.count(b"[") + data.count(b"{")
    if values > MAX_JSON_VALUES:
        raise GradingError(f"{shown}: has some {values:,} JSON values, over the limit of {MAX_JSON_VALUES:,} "
                           "for a notebook; refused without grading it")
    return data


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size} bytes"


class _BadNumber(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(text)
    return value


def _constant(name: str):
    raise _BadNumber(name)


def _parse_json(data: bytes, shown: str):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GradingError(f"{shown}: not a readable notebook (not UTF-8 text: byte {exc.start})") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_constant)
    except _BadNumber as exc:
        raise GradingError(f"{shown}: holds the number {str(exc)[:20]}, which is not finite; "
                           "no notebook the kernel saved has one") from None
    except RecursionError:
        raise GradingError(f"{shown}: nested too deeply to be a notebook") from None
    except json.JSONDecodeError as exc:
        raise GradingError(f"{shown}: not a readable notebook (invalid JSON: {exc})") from None
    except ValueError:  # an integer of thousands of digits
        raise GradingError(f"{shown}: holds a number with more digits than Python reads; "
                           "no notebook the kernel saved has one") from None


def _format_problem(nb, shown: str) -> str | None:
    if not isinstance(nb, dict):
        return f"not a notebook (the file holds a JSON {type(nb).__name__}, not an object)"
    version = nb.get("nbformat")
    if version in (1, 2, 3) or "worksheets" in nb:
        return (f"a notebook in format {version if isinstance(version, int) else 3}, which has no list of cells; "
                f"convert it with `jupyter nbconvert --to notebook --nbformat 4 '{shown}'` and grade the result")
    if not isinstance(nb.get("cells"), list):
        return "not a notebook (no list of cells)"
    if version != 4:
        return f"notebook format {str(version)[:20]} is not supported (need 4)"
    return None


def _depth_problem(nb) -> str | None:
    stack = [(nb, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep, too deep to be a notebook"
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return None


def _is_text(value) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))


def _structure_problem(nb: dict) -> str | None:
    """What is of the wrong type where the grader reads, as a phrase, or None."""
    meta = nb.get("metadata", {})
    if not isinstance(meta, dict):
        return "its metadata is not an object"
    for key in ("kernelspec", "workshop"):
        if not isinstance(meta.get(key, {}), dict):
            return f"metadata.{key} is not an object"
    for number, cell in enumerate(nb["cells"], 1):
        problem = _cell_problem(cell)
        if problem:
            return f"cell {number} {problem}"
    return None


def _cell_problem(cell) -> str | None:
    if not isinstance(cell, dict):
        return "is not an object"
    if not isinstance(cell.get("id", ""), str) or not isinstance(cell.get("cell_type", ""), str):
        return "has an id or type that is not text"
    if not isinstance(cell.get("metadata", {}), dict):
        return "has metadata that is not an object"
    if not _is_text(cell.get("source", "")):
        return "has a source that is not text"
    outputs = cell.get("outputs", [])
    if not isinstance(outputs, list):
        return "has outputs that are not a list"
    for output in outputs:
        problem = _output_problem(output)
        if problem:
            return f"has an output that {problem}"
    return None


def _output_problem(output) -> str | None:
    if not isinstance(output, dict):
        return "is not an object"
    if not isinstance(output.get("output_type", ""), str) or not isinstance(output.get("name", ""), str):
        return "has a type or name that is not text"
    if not _is_text(output.get("text", "")):
        return "has text that is not text"
    data = output.get("data", {})
    if not isinstance(data, dict):
        return "has data that is not an object"
    return _record_problem(data[RECORD_MIME]) if RECORD_MIME in data else None


_RECORD_FIELDS = {"exit_status": int, "execution_count": int, "session": str, "cell_id": str,
                  "source_digest": str, "status": str}


def _record_problem(record) -> str | None:
    if not isinstance(record, dict):
        return "carries a record that is not an object"
    for key, kind in _RECORD_FIELDS.items():
        value = record.get(key)
        if value is None and key != "exit_status":
            continue
        if key in record and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"carries a record whose {key} is not {'a whole number' if kind is int else 'text'}"
    for key in ("stdout", "stderr"):
        if not isinstance(record.get(key) or {}, dict):
            return f"carries a record whose {key} is not an object"
    checks = record.get("checks", [])
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        return "carries a record whose checks are not a list of objects"
    return None


__all__ = ["MAX_CELLS", "MAX_DEPTH", "MAX_JSON_VALUES", "MAX_NOTEBOOK_BYTES", "check_notebook", "parse_notebook_json",
           "read_notebook_json"]
