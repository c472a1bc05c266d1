"""The results of a rerun batch on disk, one file per submission, written as each arrives.

``OUT/results/KEY.json`` holds one submission's result (and how long its VM
start, run and grade took); ``OUT/executed/KEY.ipynb`` the notebook its rerun
executed.  KEY is a digest of everything the result depends on (the
submission's content and name, the reference, the options), so a batch that
was killed can be resumed without rerunning what is done, and a changed
submission is run again.  File names in the store are digests only: a
submission's file name is the student's choice and never becomes a path here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

RERUN_FAILED = "rerun-error"  # a flag of the machinery failing: such a result is retried on --resume


def result_key(*parts: object) -> str:
    """A digest of ``parts`` (plain data), the name of one result in the store."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_digest(data: object) -> str:
    """A digest of a notebook's (or any plain data's) content."""
    return result_key(data)


class ResultsStore:
    """``OUT/results`` and ``OUT/executed``: written atomically, read back for reports and --resume."""

    def __init__(self, out_dir: Path | str):
        self.dir = Path(out_dir)
        self.results = self.dir / "results"
        self.executed = self.dir / "executed"
        for folder in (self.results, self.executed):
            folder.mkdir(parents=True, exist_ok=True)

    def _path(self, folder: Path, key: str, suffix: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a result key: {key[:80]!r}")
        return folder / f"{key}{suffix}"

    def get(self, key: str) -> dict | None:
        """The stored entry (``result``, ``timings``...) for ``key``, or None."""
        try:
            entry = json.loads(self._path(self.results, key, ".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or cut short by a crash before the rename (never half-written: see _write)
        return entry if isinstance(entry, dict) and isinstance(entry.get("result"), dict) else None

    def done(self, key: str) -> dict | None:
        """The stored result for ``key`` when nothing is left to do for it (a failure of the
        machinery is worth another try), or None."""
        entry = self.get(key)
        if entry is None or any(f.get("kind") == RERUN_FAILED for f in entry["result"].get("flags", [])):
            return None
        return entry["result"]

    def put(self, key: str, result: dict, executed: str | None = None, **details) -> None:
        """Store one submission's result (and its executed notebook), each file whole or not at all."""
        if executed is not None:
            path = self._path(self.executed, key, ".ipynb")
            _write(path, executed)
            result = result | {"executed": str(path)}
        entry = {"key": key, "result": result, "stored_at": time.time(), **details}
        _write(self._path(self.results, key, ".json"), json.dumps(entry, ensure_ascii=False))

    def entries(self) -> list[dict]:
        """Every stored entry (for benchmarks and tools): in no particular order."""
        found = []
        for path in sorted(self.results.glob("*.json")):
            entry = self.get(path.stem)
            if entry:
                found.append(entry)
        return found


def _write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, and rename it
    into place: a reader (or a resumed batch) sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["RERUN_FAILED", "ResultsStore", "content_digest", "result_key"]
