"""Collecting for grading: the roster, and the latest submission of each student in one folder.

The roster is the JupyterHub's users (not its admins) when the course names a hub
(``hub_url`` in course.json, or $JUPYTERHUB_API_URL; the token in $JUPYTERHUB_API_TOKEN),
else the members of the course group, else everyone who handed in.  ``OUT/USER.ipynb``
is what ``workshop grade REFERENCE OUT`` reads (a student per file, named by the file);
``OUT/collected.csv`` says when each was handed in and who is missing, and
``OUT/roster.csv`` is the ``--roster`` for grade files that need names.
"""

from __future__ import annotations

import csv
import grp
import io
import json
import os
import pwd
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExchangeError
from .collector import receipts
from .course import USER, Course, parse_time, stamp_name, write_file

OUR_FILES = ("collected.csv", "roster.csv")


def hub_users(url: str, token: str | None, max_pages: int = 1000) -> list[str]:
    """The users of a JupyterHub (its REST API, with an API token), admins left out.  Hubs from 2.0 on
    list users a page at a time when asked for pages; older ones answer with the whole list."""
    api = url.rstrip("/")
    api = api if api.endswith("/hub/api") else api + "/hub/api"
    headers = {"Accept": "application/jupyterhub-pagination+json", **({"Authorization": f"token {token}"}
                                                                      if token else {})}
    users: list = []
    page: str | None = api + "/users?include_stopped_servers=1"
    for _ in range(max_pages):
        try:
            with urllib.request.urlopen(urllib.request.Request(page, headers=headers), timeout=20) as answer:
                model = json.loads(answer.read(16 * 2**20))
        except (OSError, ValueError) as exc:
            raise ExchangeError(f"the hub at {url} did not list its users ({exc}); check the URL and that "
                                "JUPYTERHUB_API_TOKEN holds a token allowed to list users (scope list:users)") from None
        if isinstance(model, list):  # a hub before 2.0: every user at once
            users += model
            break
        users += model.get("items") or []
        following = (model.get("_pagination") or {}).get("next")
        page = following.get("url") if isinstance(following, dict) else None
        if not page:
            break
        if not page.startswith(api + "/"):
            page = api + "/users?" + urllib.parse.urlencode({"offset": following.get("offset", 0),
                                                             "limit": following.get("limit", 200),
                                                             "include_stopped_servers": 1})
    return sorted(u["name"] for u in users if isinstance(u, dict) and isinstance(u.get("name"), str)
                  and USER.match(u["name"]) and not u.get("admin"))


def group_members(group: str) -> list[str]:
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        raise ExchangeError(f"there is no group {group} on this machine; make it (groupadd {group}) or change the "
                            "course's group with workshop exchange init --group") from None
    return sorted(set(entry.gr_mem) | {u.pw_name for u in pwd.getpwall() if u.pw_gid == entry.gr_gid})


def roster(course: Course) -> tuple[list[str] | None, str]:
    """The students, and where the list came from (None: no roster, everyone who handed in)."""
    config = course.config()
    url = config["hub_url"] or os.environ.get("JUPYTERHUB_API_URL")
    if url:
        return hub_users(url, os.environ.get("JUPYTERHUB_API_TOKEN")), f"the users of the hub at {url}"
    if config["group"]:
        return group_members(config["group"]), f"the members of the group {config['group']}"
    return None, "everyone who handed in (the course names no hub and no group)"


@dataclass
class Collected:
    rows: list[dict]
    source: str  # where the roster came from

    @property
    def count(self) -> int:
        return sum(1 for row in self.rows if row["status"] == "collected")


def _choose(found: list[dict], on_time: bool) -> tuple[dict | None, str]:
    if not found:
        return None, "missing"
    if on_time:
        before = [r for r in found if not r.get("late")]
        return (before[-1], "collected") if before else (None, "only late submissions")
    return found[-1], "collected"


def _prepare_out(out: Path, replace: bool) -> None:
    if out.exists() and not out.is_symlink() and out.is_dir():
        info = out.stat()
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise ExchangeError(f"{out} must be a folder of yours that no one else can write to (another user could "
                                "plant links in it); collect into a new folder")
    if out.exists() and any(out.iterdir()):
        if not replace:
            raise ExchangeError(f"{out} is not empty; collect into a new folder, or give --replace to empty it first")
        for path in out.iterdir():
            if path.suffix == ".ipynb" or path.name in OUR_FILES:
                path.unlink()
    out.mkdir(mode=0o700, parents=True, exist_ok=True)


def collect(course: Course, name: str, out: Path, on_time: bool = False, replace: bool = False) -> Collected:
    """Copy each student's latest submission (``on_time``: the latest before the deadline) to OUT/USER.ipynb."""
    info = course.assignment(name)
    students, source = roster(course)
    folder = course.submissions / name
    handed = sorted(p.name for p in folder.iterdir() if p.is_dir() and USER.match(p.name)) if folder.is_dir() else []
    _prepare_out(out, replace)
    rows = []
    for student in sorted(set(students or []) | set(handed)):
        found = receipts(course, name, student)
        chosen, status = _choose(found, on_time)
        if students is not None and student not in students:
            status = "not on the roster (not collected)"
        elif chosen is not None:
            stamp = stamp_name(parse_time(chosen["submitted_at"]))
            write_file(out / f"{student}.ipynb", (folder / student / f"{stamp}.ipynb").read_bytes(), 0o600)
        rows.append({"student": student, "status": status, "submitted_at": (chosen or {}).get("submitted_at", ""),
                     "late": "yes" if chosen and chosen.get("late") else "", "late_by_seconds":
                     (chosen or {}).get("late_by_seconds", "") if chosen and chosen.get("late") else "",
                     "submissions": len(found), "sha256": (chosen or {}).get("sha256", "")})
    _write_csvs(out, rows, info)
    return Collected(rows, source)


def _write_csvs(out: Path, rows: list[dict], info: dict) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, ["student", "status", "submitted_at", "late", "late_by_seconds", "submissions",
                                   "sha256"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    text.write(f"# deadline: {info.get('deadline') or 'none'}\n")
    write_file(out / "collected.csv", text.getvalue().encode(), 0o600)
    names = io.StringIO()
    roster_writer = csv.writer(names, lineterminator="\n")
    roster_writer.writerow(["id", "name"])
    for row in rows:
        if row["status"] == "collected":
            try:
                full = pwd.getpwnam(row["student"]).pw_gecos.split(",")[0] or row["student"]
            except KeyError:
                full = row["student"]
            roster_writer.writerow([row["student"], full])
    write_file(out / "roster.csv", names.getvalue().encode(), 0o600)


__all__ = ["Collected", "collect", "group_members", "hub_users", "roster"]
