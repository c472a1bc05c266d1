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

SCHEMA_VERSION = 1
RECORD_MIME = "application/vnd.workshop.record+json"


def sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class StreamDigest:
    """Incremental digest and byte count of one output stream.

    It also keeps the shown text (bounded by the kernel's output limit): checks
    evaluate it, and when it holds ``\r`` or ``\b`` a second digest covers the
    text as frontends that fold overwritten characters save it.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._parts: list[str] = []
        self.shown_chars = 0
        self.total_bytes = 0
        self.truncated = False

    def add_shown(self, text: str) -> None:
        self._hash.update(text.encode("utf-8", "surrogatepass"))
        self._parts.append(text)
        self.shown_chars += len(text)

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def hexdigest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def normalized_hexdigest(self) -> str | None:
        """Digest of the text with overwritten characters folded, if that differs."""
        text = self.text
        if "\r" not in text and "\b" not in text:
            return None
        return sha256_text(fold_overwrites(text))


_BACKSPACE = re.compile(r"[^\n]\x08")


def fold_overwrites(text: str) -> str:
    """Remove characters overwritten by ``\b`` and ``\r`` the way JupyterLab and
    the classic notebook do before they store a stream output."""
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
    from one walk over the runs up to the last one the loop would reach.
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
    line = ""  # the part of the current line folded so far
    pos = 0
    for i, run in enumerate(runs[: last + 1]):
        if pos < run.start():
            line += text[pos : run.start()]
            newline = line.rfind("\n")
            if newline >= 0:
                out.append(line[: newline + 1])
                line = line[newline + 1 :]
        # the segment after the run ends at the next run or newline
        end = runs[i + 1].start() if i + 1 < len(runs) else len(text)
        newline = text.find("\n", run.end(), end)
        if newline >= 0:
            end = newline
        segment = text[run.end() : end]
        line = segment + line[len(segment) :]
        pos = end
    out.append(line)
    out.append(text[pos:])
    return "".join(out)


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
    checks: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    stdout: StreamDigest = field(default_factory=StreamDigest)
    stderr: StreamDigest = field(default_factory=StreamDigest)
    extra: dict = field(default_factory=dict)
    expected_exit: int = 0  # from `%expect exit N`: that status is not an error

    @property
    def ok(self) -> bool:
        return self.exit_status == self.expected_exit and all(c.get("passed") for c in self.checks)

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
        data.update(self.extra)
        return data

    def bundle(self) -> dict:
        data = self.as_dict()
        return {
            RECORD_MIME: data,
            "text/html": badge_html(data),
            "text/plain": badge_text(data),
        }


def _stream_dict(digest: StreamDigest) -> dict:
    data = {
        "digest": digest.hexdigest(),
        "bytes": digest.total_bytes,
        "truncated": digest.truncated,
    }
    normalized = digest.normalized_hexdigest()
    if normalized:
        data["digest_folded"] = normalized
    return data


def _summary(data: dict) -> tuple[bool, str]:
    ok = data["status"] == "ok" and all(c.get("passed") for c in data.get("checks", []))
    parts = [f"exit {data['exit_status']}"]
    if data.get("timed_out"):
        parts.append("timed out")
    elif data.get("interrupted"):
        parts.append("interrupted")
    parts.append(_duration(data["duration"]))
    parts.append(data["target"].get("name") or data["target"].get("kind", ""))
    return ok, " · ".join(parts)


def badge_text(data: dict) -> str:
    ok, summary = _summary(data)
    lines = [f"{'✔' if ok else '✘'} {summary}"]
    for check in data.get("checks", []):
        mark = "✔" if check.get("passed") else "✘"
        lines.append(f"  {mark} {check.get('name', '')}: {check.get('message', '')}".rstrip(": "))
    return "\n".join(lines)


def badge_html(data: dict) -> str:
    ok, summary = _summary(data)
    color = "#1a7f37" if ok else "#cf222e"
    rows = "".join(
        f"<li style='color:{'#1a7f37' if c.get('passed') else '#cf222e'}'>"
        f"{'✔' if c.get('passed') else '✘'} {html.escape(str(c.get('name', '')))}"
        f"{': ' + html.escape(str(c['message'])) if c.get('message') else ''}</li>"
        for c in data.get("checks", [])
    )
    checks = f"<ul style='margin:2px 0 0 1em;padding:0'>{rows}</ul>" if rows else ""
    return (
        f"<div class='workshop-record' style='font:12px monospace;color:{color}'>"
        f"{'✔' if ok else '✘'} {html.escape(summary)}{checks}</div>"
    )


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def now() -> datetime:
    return datetime.now(timezone.utc)

