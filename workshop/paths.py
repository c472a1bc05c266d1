"""Where the tool keeps its own state (never inside a repository)."""

from __future__ import annotations

from pathlib import Path

from .settings import Settings


def data_dir() -> Path:
    """``$WORKSHOP_DATA_DIR``, else ``$XDG_DATA_HOME/workshop`` (~/.local/share/workshop)."""
    path = Path(Settings().data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)  # keys, known hosts, VMs and records: this user's alone
    return path


def known_hosts_file() -> Path:
    return data_dir() / "known_hosts"
