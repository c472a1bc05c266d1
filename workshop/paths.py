"""Where the tool keeps its own state (never inside a repository)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """``$WORKSHOP_DATA_DIR``, else ``$XDG_DATA_HOME/workshop`` (~/.local/share/workshop)."""
    explicit = os.environ.get("WORKSHOP_DATA_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "workshop"
    path.mkdir(parents=True, exist_ok=True)
    return path


def known_hosts_file() -> Path:
    return data_dir() / "known_hosts"
