"""The per-cell record: what ran, where, how it ended, and digests of what it showed.

The record travels as a ``display_data`` output (so every frontend saves it in
the .ipynb) and in the ``execute_reply`` metadata.  Digests let a grader tell
when shown output was edited after the run: they cover exactly the text the
kernel sent for each stream, which is what the notebook stores.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypedDict

SCHEMA_VERSION = 1
RECORD_MIME = "application/vnd.workshop.record+json"
# A stream's record also holds digests of its first 64 Ki characters, 128 Ki,
# 256 Ki and so on, doubling: a saved output that a client cut short can be
# verified up to the last of these offsets it still holds.
PREFIX_FIRST = 64 * 1024


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(_utf8(text)).hexdigest()


def _first_overwrite(data: bytes) -> int:
    """Index of the first \\r or \\b in ``data``, or -1 (bytes.find is memchr: fast)."""
    cr, bs = data.find(b"\r"), data.find(b"\x08")
    return cr if bs < 0 else bs if cr < 0 else min(cr, bs)


class StreamDigest:
    """Incremental digests and byte count of one output stream, in bounded memory.

    The digest of the shown text is computed as it streams.  A second digest
    covers the text as frontends save it, with characters overwritten by ``\r``
    or ``\b`` folded.  Folding reaches back only to the start of a line, so both
    digests share the lines before the first ``\r`` or ``\b`` (the main digest
    lags one line behind until then) and only the text from that line on is kept
    for folding.  The whole text is kept only when asked (``keep_text``: checks on
    the stream read it).
    """

    def __init__(self, keep_text: bool = False) -> None:
        self._hash = hashlib.sha256()
        self._line: list[bytes] = []  # the line in progress, not yet digested
        self._folded_head: hashlib._Hash | None = None  # the lines before the first overwrite
        self._overwriting: list[str] = []  # the text from the line of the first overwrite on
        self._parts: list[str] = []
        self.keep_text = keep_text
        self.shown_chars = 0
        self.total_bytes = 0
        self.truncated = False
        self.prefix_digests: dict[int, str] = {}  # characters -> digest of the text's first characters
        self._next_prefix = PREFIX_FIRST

    def add_shown(self, text: str) -> None:
        while self.shown_chars + len(text) >= self._next_prefix:
            head = self._next_prefix - self.shown_chars
            self._add(text[:head])
            text = text[head:]
            self.prefix_digests[self._next_prefix] = self.hexdigest()
            self._next_prefix *= 2
        if text:
            self._add(text)

    def _add(self, text: str) -> None:
        self.shown_chars += len(text)
        if self.keep_text:
            self._parts.append(text)
        data = _utf8(text)
        if self._folded_head is not None:
            self._hash.update(data)
            self._overwriting.append(text)
            return
        first = _first_overwrite(data)
        newline = data.rfind(b"\n", 0, len(data) if first < 0 else first)
        if newline >= 0:
            for part in self._line:
                self._hash.update(part)
            self._hash.update(memoryview(data)[: newline + 1])
            self._line = []
        rest = data[newline + 1 :]
        if first >= 0:
            self._folded_head = self._hash.copy()
            self._line.append(rest)
            self._overwriting = [b"".join(self._line).decode("utf-8", "surrogatepass")]
            for part in self._line:
                self._hash.update(part)
            self._line = []
        elif rest:
            self._line.append(rest)

    @property
    def text(self) -> str:
        """The shown text; only kept with ``keep_text``."""
        if not self.keep_text:
            raise RuntimeError("this stream's text was not kept; set keep_text before output arrives")
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def hexdigest(self) -> str:
        digest = self._hash.copy()
        for part in self._line:
            digest.update(part)
        return "sha256:" + digest.hexdigest()

    def normalized_hexdigest(self) -> str | None:
        """Digest of the text with overwritten characters folded, if it has any."""
        if self._folded_head is None:
            return None
        digest = self._folded_head.copy()
        digest.update(_utf8(fold_overwrites("".join(self._overwriting))))
        return "sha256:" + digest.hexdigest()


_BACKSPACE = re.compile(r"[^\n]\x08")


def fold_overwrites(text: str) -> str:
    """Remove characters overwritten by ``\b`` and ``\r`` the way JupyterLab and
    the classic notebook do before they store a stream output.  (Each backspace
    pass at least halves a run of backspaces; carriage returns fold in one pass.)"""
    previous = None
    while previous is None or len(text) < len(previous):
        previous, text = text, _BACKSPACE.sub("", text)
    text = text.replace("\r\n", "\n")
    text = re.sub(r"\r+\n", "\n", text)
    return fold_carriage_returns(text)


_CR_RUN = re.compile(r"\r+")


def fold_carriage_returns(text: str) -> str:
    """JupyterLab's carriage-return folding in one pass.

    JupyterLab folds the first run of ``\\r`` of the text (the segment after it
    overwrites the start of its line) and repeats while a ``\\r`` is followed by
    a character other than ``$``; done literally that is quadratic in the number
    of progress updates.  Runs are folded left to right, so the same result comes
    from one walk over the runs up to the last one the loop would reach; the line
    being overwritten is a list of characters, changed in place.
    """
    runs = list(_CR_RUN.finditer(text))
    last = -1
    for i, run in enumerate(runs):
        following = text[run.end() : run.end() + 1]
        if run.end() - run.start() > 1 or (following and following != "$"):
            last = i
    if last < 0:
        return text
    out: list[str] = []
    line: list[str] = []  # the current line folded so far
    pos = 0
    for i, run in enumerate(runs[: last + 1]):
        if pos < run.start():
            _add_text(out, line, text[pos : run.start()])
        # the segment after the run ends at the next run or newline
        end = runs[i + 1].start() if i + 1 < len(runs) else len(text)
        newline = text.find("\n", run.end(), end)
        if newline >= 0:
            end = newline
        segment = text[run.end() : end]
        line[: len(segment)] = segment
        pos = end
    out.append("".join(line))
    out.append(text[pos:])
    return "".join(out)


def _add_text(out: list[str], line: list[str], added: str) -> None:
    """Append ``added`` to the current line; lines it completes go to ``out``."""
    newline = added.rfind("\n")
    if newline < 0:
        line.extend(added)
        return
    out.append("".join(line) + added[: newline + 1])
    line[:] = added[newline + 1 :]


class _RecordCheckKeys(TypedDict):
    id: str  # within the cell: "expect:..." or "check:NAME"
    kind: str  # "expect" or "check"
    name: str
    passed: bool
    message: str  # why it failed, in words ("" when it passed)
    expected: str
    got: str
    points: float


class RecordCheck(_RecordCheckKeys, total=False):
    """One check's result as a cell's record holds it (``checks``)."""

    digest: str  # of a %%check script: the grader takes the result only when it is the reference's
    output: str  # what the script printed (its end)


# The keys of a record's schema (Record.as_dict); what magics and the session add goes beside them.
SCHEMA_KEYS = frozenset({
    "schema", "cell_id", "execution_count", "session", "target", "started", "duration", "exit_status", "status",
    "interrupted", "timed_out", "magics", "failed_commands", "checks", "source_digest", "stdout", "stderr",
    "expected_exit", "notices",
})


class RecordExtra(dict):
    """What magics and the session add to a record beyond its schema (``cgroup``, ``overlay``,
    ``task``, ``framing``, ``tampered``...): a namespace of its own, saved beside the schema's keys,
    that never names one of them, so that nothing added can change what the record says of the run."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.update(*args, **kwargs)

    def __setitem__(self, key: str, value) -> None:
        if key in SCHEMA_KEYS:
            raise KeyError(f"{key!r} is a key of the record's schema, which an extra cannot replace; "
                           "give the extra a name of its own")
        super().__setitem__(key, value)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default=None):
        if key not in self:
            self[key] = default
        return self[key]


@dataclass
class Record:
    cell_id: str | None
    execution_count: int
    session: str
    target: dict
    started: datetime
    source: str
    duration: float = 0.0
    exit_status: int = 0
    interrupted: bool = False
    timed_out: bool = False
    magics: list[str] = field(default_factory=list)
    failed_commands: list[dict] = field(default_factory=list)
    checks: list[RecordCheck] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    stdout: StreamDigest = field(default_factory=StreamDigest)
    stderr: StreamDigest = field(default_factory=StreamDigest)
    extra: RecordExtra = field(default_factory=RecordExtra)
    expected_exit: int = 0  # from `%expect exit N`: that status is not an error
    shown: bool = True  # False: the cell only showed help, so no badge (the reply still has the record)

    def __post_init__(self) -> None:
        if not isinstance(self.extra, RecordExtra):
            self.extra = RecordExtra(self.extra)

    def as_dict(self) -> dict:
        data = {
            "schema": SCHEMA_VERSION,
            "cell_id": self.cell_id,
            "execution_count": self.execution_count,
            "session": self.session,
            "target": self.target,
            "started": self.started.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
            "duration": round(self.duration, 6),
            "exit_status": self.exit_status,
            "status": "ok" if self.exit_status == self.expected_exit else "error",
            "interrupted": self.interrupted,
            "timed_out": self.timed_out,
            "magics": self.magics,
            "failed_commands": self.failed_commands,
            "checks": self.checks,
            "source_digest": sha256_text(self.source),
            "stdout": _stream_dict(self.stdout),
            "stderr": _stream_dict(self.stderr),
        }
        if self.expected_exit:
            data["expected_exit"] = self.expected_exit
        if self.notices:
            data["notices"] = self.notices
        data.update((key, value) for key, value in self.extra.items() if key not in SCHEMA_KEYS)
        return data

    def bundle(self, said: str = "") -> dict:
        """The record and its badge; ``said``: the name of the error an error block above
        the badge already reports (the badge does not say it again)."""
        data = self.as_dict()
        return {
            RECORD_MIME: data,
            "text/html": badge_html(data, said),
            "text/plain": badge_text(data, said),
        }


def _stream_dict(digest: StreamDigest) -> dict:
    data = {
        "digest": digest.hexdigest(),
        "bytes": digest.total_bytes,
        "chars": digest.shown_chars,
        "truncated": digest.truncated,
    }
    if digest.prefix_digests:
        data["prefix_digests"] = {str(n): d for n, d in digest.prefix_digests.items()}
    normalized = digest.normalized_hexdigest()
    if normalized:
        data["digest_folded"] = normalized
    return data


# The badge: what happened, in the fewest words.  Colours come from JupyterLab's
# theme (so they hold in light and dark).  Each is declared twice: first a plain
# colour that reads on a light or a dark background, for where the theme's
# variables are missing or a sanitizer drops var() (JupyterLab, for a notebook it
# does not trust: one from a student), then the theme's, which wins where it holds.
_GREEN = "color:#388e3c;color:var(--jp-success-color1,#388e3c)"
_RED = "color:#e04848;color:var(--jp-error-color1,#e04848)"
_FONT = ("font-family:monospace;font-family:var(--jp-code-font-family,monospace);"
         "font-size:var(--jp-code-font-size,13px)")


# The error a cell gets for failed checks when they fail the cell (failed_check = "error").
CHECKS_FAILED = "CheckFailed"


@dataclass(frozen=True)
class Badge:
    ok: bool
    head: str  # the outcome: "exit 0", "2 checks", "check 'x': message", "interrupted"
    detail: str  # how long and where, shown muted
    failures: tuple[tuple[str, str], ...]  # (check name, message) of failed checks not named in head


def badge(data: dict, said: str = "") -> Badge:
    """The badge of a record: the cell's own failure first, else its checks, else its exit status.
    ``said``: the error (its name) an error block shows above the badge: how the cell
    failed is then not said twice, and the badge keeps only what that block does not say."""
    checks = [c for c in data.get("checks", []) if isinstance(c, dict)]
    failed = [c for c in checks if not c.get("passed")]
    ok = data["status"] == "ok" and not failed
    outcome = _outcome(data)
    if outcome:  # checks that did not run, and `%expect exit N`, would only repeat it
        failed = [c for c in failed if not str(c.get("message", "")).startswith("not run")
                  and not (c.get("kind") == "expect" and str(c.get("name", "")).startswith("exit "))]
    failed_named = tuple((str(c.get("name") or "check"), str(c.get("message") or "failed")) for c in failed)
    if said:
        head = ""
        if said == CHECKS_FAILED:  # the error block lists the failed checks
            failed_named = ()
    elif outcome:
        head = outcome
    elif len(failed) == 1:
        head, failed_named = "check '{}': {}".format(*failed_named[0]), ()
    elif failed:
        head = f"{len(failed)} of {len(checks)} checks failed"
    elif checks:
        head = f"{len(checks)} check{'' if len(checks) == 1 else 's'}"
    else:
        head = f"exit {data['exit_status']}"
    if isinstance(data.get("task"), dict):
        head = f"{_task_text(data['task'], checks)} · {head}" if head else _task_text(data["task"], checks)
    target = data["target"].get("name") or data["target"].get("kind", "")
    return Badge(ok, head, f"{_duration(data['duration'])} · {target}", failed_named)


def _outcome(data: dict) -> str:
    """How the cell itself ended when that was not as expected, else ""."""
    if data.get("timed_out"):
        return "timed out"
    if data.get("interrupted"):
        return "interrupted"
    if data["status"] != "ok":
        expected = data.get("expected_exit")
        return f"exit {data['exit_status']}" + (f", expected {expected}" if expected else "")
    return ""


def badge_text(data: dict, said: str = "") -> str:
    shown = badge(data, said)
    lines = [f"{'✔' if shown.ok else '✘'} {shown.head} · {shown.detail}" if shown.head else shown.detail]
    lines += [f"✘ check '{name}': {message}" for name, message in shown.failures]
    return "\n".join(lines)


# The classes that keep MathJax away from an HTML output: a regex such as
# /^X$/ holds two dollars, which it would typeset as maths.  mathjax_ignore is
# MathJax 3's (JupyterLab 4, Notebook 7), tex2jax_ignore MathJax 2's (nbconvert's
# HTML templates, the classic notebook).
NO_MATHS = "tex2jax_ignore mathjax_ignore"


def badge_html(data: dict, said: str = "") -> str:
    """Plain lines, no list (its bullets show clipped beside an output), coloured marks."""
    shown = badge(data, said)
    esc = html.escape
    if shown.head:
        head = (f"<div><span style='{_GREEN if shown.ok else _RED}'>{'✔' if shown.ok else '✘'} "
                f"{esc(shown.head)}</span><span style='opacity:0.7'> · {esc(shown.detail)}</span></div>")
    else:  # how it failed is in the error block above
        head = f"<div><span style='opacity:0.7'>{esc(shown.detail)}</span></div>"
    rows = "".join(f"<div><span style='{_RED}'>✘ check '{esc(name)}'</span>: {esc(message)}</div>"
                   for name, message in shown.failures)
    return (f"<div class='workshop-record {NO_MATHS}' style='{_FONT};line-height:1.4;white-space:pre-wrap;"
            f"overflow-wrap:anywhere'>{head}{rows}</div>")


def _task_text(task: dict, checks: list[dict]) -> str:
    """``task · 3 points`` (``, 1 by hidden checks``, `` + 2 by hand``): what a task
    cell of an assignment is worth.  Points the cell's own checks do not account
    for come from hidden checks, run at grading: said, lest the sum look wrong."""
    def amount(value) -> float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0

    points, manual = amount(task.get("points")), amount(task.get("manual_points"))
    text = f"task · {points:g} point{'' if points == 1 else 's'}" if points or not manual else "task"
    if points and checks and all("points" in c for c in checks):
        hidden = points - sum(amount(c["points"]) for c in checks)
        text += f", {hidden:g} by hidden checks" if hidden > 0 else ""
    return text + (f" + {manual:g} by hand" if manual else "")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def now() -> datetime:
    return datetime.now(timezone.utc)



# ---- reading records back from a saved notebook --------------------------------
# A notebook read as plain JSON (or as nbformat nodes, which are dicts too).


def multiline_text(value) -> str:
    """A notebook's multi-line string: saved either as one string or as a list of lines."""
    return "".join(value) if isinstance(value, list) else (value or "")


def cell_streams(cell: dict) -> tuple[str, str]:
    """All stdout and all stderr a cell shows (consecutive outputs may be merged)."""
    out: list[str] = []
    err: list[str] = []
    for output in cell.get("outputs") or ():
        if output.get("output_type") == "stream":
            (err if output.get("name") == "stderr" else out).append(multiline_text(output.get("text")))
    return "".join(out), "".join(err)


def cell_record(cell: dict) -> dict | None:
    """The record a cell's outputs carry, or None (not run, outputs cleared, or not an object)."""
    for output in cell.get("outputs") or ():
        data = output.get("data")
        if data and RECORD_MIME in data:
            record = data[RECORD_MIME]
            return record if isinstance(record, dict) else None
    return None


def stream_matches(text: str, stream: dict | None) -> bool:
    """Whether shown text is what the kernel sent (or that, with overwrites folded)."""
    if not isinstance(stream, dict):
        return False
    if sha256_text(text) == stream.get("digest"):
        return True
    folded = stream.get("digest_folded")
    return bool(folded) and sha256_text(fold_overwrites(text)) == folded


@dataclass(frozen=True)
class StreamVerdict:
    """How saved text compares with what the kernel sent on a stream."""

    kind: str  # "exact", "truncated" (a verified prefix: a client cut it) or "edited"
    kept: int = 0  # characters the notebook holds
    verified: int = 0  # of them, how many the record's digests vouch for
    shown: int | None = None  # characters the kernel sent, when the record says

    def describe(self, name: str) -> str:
        return (f"the notebook kept {self.kept} of the {self.shown} characters of {name} the kernel sent "
                f"(the first {self.verified} verified against the record)")


def classify_stream(text: str, stream: dict | None, dropped: bool = False) -> StreamVerdict:
    """Saved text against a stream of the record: exactly what the kernel sent,
    a prefix of it (a client kept only the start: the last prefix digest the
    text reaches must match), or edited.  ``dropped``: the Jupyter server said
    it dropped output of this cell (its rate limit), so what follows the longest
    verified prefix may have gaps; any prefix digest that matches counts."""
    if stream_matches(text, stream):
        return StreamVerdict("exact", len(text), len(text), len(text))
    shown = stream.get("chars") if isinstance(stream, dict) else None
    prefixes = stream.get("prefix_digests") if isinstance(stream, dict) else None
    if not isinstance(shown, int) or isinstance(shown, bool) or not isinstance(prefixes, dict) or len(text) >= shown:
        return StreamVerdict("edited", len(text), 0, shown if isinstance(shown, int) else None)
    offsets = sorted((int(key) for key in prefixes if str(key).isdigit() and int(key) <= len(text)), reverse=True)
    for n in offsets if dropped else offsets[:1]:
        if sha256_text(text[:n]) == prefixes.get(str(n)):
            return StreamVerdict("truncated", len(text), n, shown)
    if dropped:
        return StreamVerdict("truncated", len(text), 0, shown)
    return StreamVerdict("edited", len(text), 0, shown)


# What jupyter_server (and the classic notebook server) write into a cell's
# stderr when their IOPub rate limit drops its output.
_SERVER_NOTICE = re.compile(
    r"IOPub (?:data|message) rate exceeded\.\n[^\r]{0,600}?rate_limit_window=[^\n]*\n\n?")


def classify_streams(record: dict, stdout: str, stderr: str) -> dict[str, StreamVerdict]:
    """Both saved streams of a cell against its record; a Jupyter server's notice
    that it dropped output is taken out of stderr and lets gaps through."""
    stderr, notices = _SERVER_NOTICE.subn("", stderr)
    dropped = notices > 0
    return {"stdout": classify_stream(stdout, record.get("stdout"), dropped),
            "stderr": classify_stream(stderr, record.get("stderr"), dropped)}
