"""The tool's own known-hosts file: pins written under a lock, replaced atomically.

Many kernels (a class starting at once, a batch of reruns) may pin keys at
the same moment; each change re-reads the file under an exclusive lock and
writes a new file that replaces the old in one step, so no pin is lost and no
reader sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import paramiko

from ..lock import FileLock
from ..paths import known_hosts_file


def _lock(path: Path) -> FileLock:
    return FileLock(path.with_name(f".{path.name}.lock"))


def _save(keys: paramiko.HostKeys, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    os.close(fd)
    try:
        keys.save(tmp)  # into a new file: readers see the old file or the new, never half of one
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def pin(pattern: str, key: paramiko.PKey, path: Path | None = None, replace: bool = False) -> None:
    """Pin ``key`` for ``pattern`` ("host" or "[host]:port"); with ``replace``,
    drop what was pinned for it before (a VM that got a new key)."""
    path = path or known_hosts_file()
    with _lock(path):
        keys = paramiko.HostKeys(str(path)) if path.exists() else paramiko.HostKeys()
        if replace and pattern in keys:
            del keys[pattern]
        pinned = keys.lookup(pattern) or {}
        if key.get_name() in pinned:
            if pinned[key.get_name()] != key:  # pinned meanwhile, and not this key
                raise paramiko.BadHostKeyException(pattern, key, pinned[key.get_name()])
            return
        keys.add(pattern, key.get_name(), key)
        _save(keys, path)


def unpin(pattern: str, path: Path | None = None) -> None:
    path = path or known_hosts_file()
    if not path.exists():
        return
    with _lock(path):
        keys = paramiko.HostKeys(str(path))
        if pattern in keys:
            del keys[pattern]
            _save(keys, path)
