"""Small helpers for text shown to people in records, reports and messages."""

from __future__ import annotations


def tail(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text``, marked with … when cut."""
    return text if len(text) <= limit else "…" + text[-limit:]


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of ``text``, stripped and cut to ``limit``."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


class Notice(str):
    """A step of getting a target ready that must stay in view once shown (a fallback and its
    reason), where a progress display would replace other steps by the next one."""
