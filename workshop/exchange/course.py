"""The course directory: its layout and settings, releasing an assignment, fetching it.

``COURSE/course.json`` holds the course's settings (``group``: the course group, whose
members may hand in and are the roster when there is no hub; ``hub_url``: a JupyterHub
whose users are the roster; ``max_bytes``: the largest notebook handed in;
``max_submissions``: hand-ins per student and assignment).  ``COURSE/released/NAME/``
holds a released assignment: ``NAME.ipynb`` and ``assignment.json`` (its deadline).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ExchangeError, GradingError
from ..grading.notebook import read_notebook_json
from ..records import multiline_text
from ..settings import Settings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # an assignment's name: safe as a file name
USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")  # what useradd accepts by default
DEFAULTS = {"group": None, "hub_url": None, "max_bytes": 16 * 2**20, "max_submissions": 50}


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def now() -> datetime:
    return datetime.now(timezone.utc)


def stamp_name(when: datetime) -> str:
    """A submission's file name (without suffix) from the collector's time: sorts as the times do."""
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S-%fZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is this machine's local time."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ExchangeError(f"{text!r} is not a time; write it as 2026-12-24T23:59 (local time) "
                            "or 2026-12-24T23:59+01:00") from None
    return (when if when.tzinfo else when.astimezone()).astimezone(timezone.utc)


def json_object(line: bytes) -> dict | None:
    """One line of the collector's socket protocol as a JSON object, or None when it is not one."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_name(name: str) -> str:
    if not NAME.match(name) or ".." in name:
        raise ExchangeError(f"{name!r} cannot name an assignment: use letters, digits, '.', '_' and '-' "
                            "(rename the notebook)")
    return name


@dataclass
class Course:
    root: Path

    @classmethod
    def at(cls, given: str | Path | None = None) -> Course:
        """The course at ``given``, else $WORKSHOP_COURSE_DIR, else /srv/workshop-course."""
        return cls(Path(given or Settings().course_dir))

    @property
    def released(self) -> Path:
        return self.root / "released"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions"

    @property
    def socket(self) -> Path:
        return self.root / "collector.sock"

    def config(self) -> dict:
        try:
            data = json.loads((self.root / "course.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise ExchangeError(f"{self.root / 'course.json'} cannot be read ({exc}); "
                                "write it again with workshop exchange init") from None
        return {**DEFAULTS, **{k: v for k, v in data.items() if k in DEFAULTS}}

    def must_exist(self) -> None:
        if not self.released.is_dir():
            raise ExchangeError(f"there is no course at {self.root}: the instructor makes it with "
                                "workshop exchange init (or give --course DIR, or set WORKSHOP_COURSE_DIR)")

    def init(self, **settings) -> dict:
        """Make the course's directories (or keep them) and update its settings."""
        old = os.umask(0o022)
        try:
            for path, mode in ((self.root, 0o755), (self.released, 0o755), (self.submissions, 0o700)):
                path.mkdir(mode=mode, parents=path is self.root, exist_ok=True)
                os.chmod(path, mode)
            config = {**self.config(), **{k: v for k, v in settings.items() if v is not None}}
            write_file(self.root / "course.json", (json.dumps(config, indent=2) + "\n").encode(), 0o644)
        finally:
            os.umask(old)
        return config

    def assignment(self, name: str) -> dict:
        """A released assignment's ``assignment.json``, or an ExchangeError naming the released ones."""
        check_name(name)
        try:
            return json.loads((self.released / name / "assignment.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none yet"
            raise ExchangeError(f"no assignment {name} is released in the course at {self.root} "
                                f"(released: {known})") from None

    def names(self) -> list[str]:
        try:
            return sorted(p.name for p in self.released.iterdir() if (p / "assignment.json").is_file())
        except FileNotFoundError:
            return []


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all (a new file renamed over the old one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- release --------------------------------------------------------------------------
def student_notebooks(given: Path) -> list[Path]:
    """The notebooks to release: a file, or the student copies in the --out folder of workshop assign."""
    if given.is_dir():
        found = sorted((given / "student").glob("*.ipynb"))
        if not found:
            raise ExchangeError(f"{given} holds no student/*.ipynb: give a notebook, or the --out folder "
                                "of workshop assign")
        return found
    return [given]


def _answers_in(nb: dict) -> str | None:
    """Why ``nb`` looks like a reference (solutions or hidden checks in it), or None."""
    for index, cell in enumerate(nb["cells"], 1):
        text = multiline_text(cell.get("source"))
        meta = (cell.get("metadata") or {}).get("workshop") or {}
        if "BEGIN SOLUTION" in text:
            return f"cell {index} holds a solution region"
        if re.search(r"^%%check\b.*--hidden", text, re.M) or (isinstance(meta, dict) and meta.get("hidden")):
            return f"cell {index} holds a hidden check"
    return None


def release(course: Course, notebook: Path, deadline: datetime | None) -> dict:
    """Publish one student notebook read-only; the deadline stays as it was unless one is given."""
    course.must_exist()
    try:
        nb = read_notebook_json(notebook)
    except GradingError as exc:
        raise ExchangeError(str(exc)) from None
    why = _answers_in(nb)
    if why:
        raise ExchangeError(f"{notebook} looks like a reference, not a student copy ({why}): release the "
                            "notebook that workshop assign wrote to OUT/student/")
    meta = (nb.get("metadata") or {}).get("workshop") or {}
    assigned = meta.get("assignment") if isinstance(meta, dict) else None
    name = check_name(assigned["name"] if isinstance(assigned, dict) and isinstance(assigned.get("name"), str)
                      else notebook.stem)
    folder = course.released / name
    folder.mkdir(mode=0o755, exist_ok=True)
    os.chmod(folder, 0o755)
    try:
        info = json.loads((folder / "assignment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    info.update(name=name, released=now().isoformat(timespec="seconds"))
    if deadline is not None:
        info["deadline"] = deadline.isoformat(timespec="seconds")
    info.setdefault("deadline", None)
    write_file(folder / f"{name}.ipynb", notebook.read_bytes(), 0o644)
    write_file(folder / "assignment.json", (json.dumps(info, indent=2) + "\n").encode(), 0o644)
    return info


# ---- fetch ----------------------------------------------------------------------------
@dataclass
class Fetched:
    name: str
    path: Path
    new: bool  # False: the student's copy was there already and is kept
    deadline: str | None


def fetch(course: Course, names: list[str], dest: Path, force: bool = False) -> list[Fetched]:
    """Copy released notebooks into ``dest`` (as the user running it); a copy already there is kept
    unless ``force``, which first renames it NAME.ipynb.~N~."""
    course.must_exist()
    wanted = names or course.names()
    if not wanted:
        raise ExchangeError(f"nothing is released yet in the course at {course.root}")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    done = []
    for name in wanted:
        info = course.assignment(name)
        target = dest / f"{name}.ipynb"
        exists = target.exists() or target.is_symlink()
        if exists and force:
            n = 1
            while Path(f"{target}.~{n}~").exists():
                n += 1
            os.rename(target, f"{target}.~{n}~")
        if not exists or force:
            write_file(target, (course.released / name / f"{name}.ipynb").read_bytes(), 0o600)
        done.append(Fetched(name, target, not exists or force, info.get("deadline")))
    return done


__all__ = ["Course", "ExchangeError", "Fetched", "check_name", "fetch", "mib", "now", "parse_time", "release", "stamp_name",
           "student_notebooks", "write_file"]
