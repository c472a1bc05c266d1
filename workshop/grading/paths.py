"""Naming what the command line gives the grader: paths shown in reports, the notebooks under
folders, and the student each submission is named after."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path


def display_path(path: Path | str) -> str:
    """A path as text every report can hold: bytes of a name that are not UTF-8 become U+FFFD."""
    return os.fsencode(str(path)).decode("utf-8", "replace")


def student_names(paths: Sequence[Path]) -> list[str]:
    """File stems, or folder names when every file has the same name (as text every
    report can hold: bytes of a name that are not UTF-8 become U+FFFD)."""
    stems = [display_path(p.stem) for p in paths]
    if len(paths) > 1 and len(set(stems)) == 1:
        parents = [display_path(p.resolve().parent.name) for p in paths]
        if len(set(parents)) == len(parents):
            return parents
    seen: dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem} ({seen[stem]})")
    return names


def expand_paths(items: Iterable[Path | str]) -> list[Path]:
    """The notebooks given: files as they are, folders searched for .ipynb.

    Checkpoints are skipped and symbolic links to folders are not followed.  A
    folder named like a notebook is one submission (graded unreadable), never
    searched: what is inside it is not a notebook of its own."""
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        if item.suffix != ".ipynb" and item.is_dir():
            paths.extend(_notebooks_under(item))
        else:
            paths.append(item)
    return paths


def _notebooks_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        found += [Path(root, name) for name in dirs + files if name.endswith(".ipynb")]
        dirs[:] = [name for name in dirs if name != ".ipynb_checkpoints" and not name.endswith(".ipynb")]
    return sorted(found)




__all__ = ["display_path", "expand_paths", "student_names"]
