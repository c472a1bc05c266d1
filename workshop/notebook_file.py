"""The notebook file a Jupyter server names for its kernel (``JPY_SESSION_NAME``).

A Jupyter concern, so it is read here, by the front end, and what it holds is
passed into the session: the notebook's target (``metadata.workshop.target``)
and its saved cells by id (JupyterLab sends a cell's id, not its metadata, so a
task cell's points are looked up in the saved file).  The session itself never
reads an environment variable of Jupyter's or opens a notebook.
"""

from __future__ import annotations

import json
import os

_MAX_BYTES = 32 * 2**20


class NotebookFile:
    """The notebook saved at ``path``, read again only when it changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._data: dict = {}
        self._cells: dict[str, dict] = {}

    @classmethod
    def named_by_server(cls, environ: dict[str, str] | None = None) -> NotebookFile | None:
        """The notebook a Jupyter server started this kernel for, or None (nbconvert, papermill, a console)."""
        path = (os.environ if environ is None else environ).get("JPY_SESSION_NAME", "")
        return cls(path) if path.endswith(".ipynb") else None

    def _read(self) -> None:
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == self._stamp:
                return
            self._stamp, self._data, self._cells = stamp, {}, {}
            if info.st_size > _MAX_BYTES:
                return
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            cells = data.get("cells", [])
            self._cells = {c["id"]: c for c in cells if isinstance(c, dict) and isinstance(c.get("id"), str)}
            self._data = data
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):  # the frontend's problem
            self._data, self._cells = {}, {}

    def target(self) -> str | None:
        """``metadata.workshop.target``, when it is a non-empty string."""
        self._read()
        try:
            spec = self._data.get("metadata", {}).get("workshop", {}).get("target")
        except AttributeError:
            return None
        return spec if isinstance(spec, str) and spec else None

    def cell(self, cell_id: str) -> dict | None:
        """The saved cell with this id."""
        self._read()
        return self._cells.get(cell_id)
