"""Handing in from where the student works (``workshop submit``, ``%submit``): the self-check,
then the saved notebook sent to the collector (:mod:`workshop.exchange.collector`)."""

from __future__ import annotations

import json
import os
import socket
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import ExchangeError, GradingError, NoChecksError
from ..grading.grade import grade_submission
from ..grading.notebook import parse_notebook_json
from ..grading.reference import Reference, reference_of
from ..grading.results import NEEDS_RERUN, GradeResult
from .course import Course, check_name, json_object, mib

MAX_REPLY = 1 << 20


def request(course: Course, message: dict, data: bytes = b"", timeout: float = 60.0) -> dict:
    """One request to the course's collector; its answer, or an ExchangeError with the collector's sentence."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(course.socket))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ExchangeError(f"the course's collector is not running (no answer on {course.socket}); "
                                "ask your instructor to start it with workshop exchange start") from None
        except PermissionError:
            raise ExchangeError(f"{course.socket}: permission denied; ask your instructor to start the "
                                "collector with workshop exchange start") from None
        try:
            sock.sendall((json.dumps(message) + "\n").encode() + data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before reading it all: the answer says why
        reply = sock.makefile("rb").readline(MAX_REPLY)
    except TimeoutError:
        raise ExchangeError(f"the collector did not answer within {timeout:g} s; try again") from None
    finally:
        sock.close()
    answer = json_object(reply)
    if answer is None:
        raise ExchangeError("the collector closed the connection without an answer; try again")
    if not answer.get("ok"):
        raise ExchangeError(str(answer.get("error") or "the collector refused without saying why"))
    return answer


@dataclass
class SelfCheck:
    reference: Reference | None  # None: the notebook has no checks
    result: GradeResult | None
    assignment: dict | None  # metadata.workshop.assignment

    def summary(self) -> str:
        """One line: the score from the visible checks, and the ones that fail."""
        if self.reference is None or self.result is None:
            return "self-check: this notebook has no checks of its own"
        judged = [c for c in self.reference.checks if self.result["checks"][c.key]["status"] != NEEDS_RERUN]
        failing = [c.key for c in judged if not self.result["checks"][c.key]["passed"]]
        text = (f"self-check: {self.result['total']:g} of {sum(c.points for c in judged):g} points "
                "from the visible checks")
        if failing:
            text += f"; not passing yet: {', '.join(failing[:8])}{' ...' if len(failing) > 8 else ''}"
        if self.result["flags"]:
            text += f"; {len(self.result['flags'])} flag(s), see workshop check"
        return text


def self_check(nb: dict, path: Path) -> SelfCheck:
    """What ``workshop check`` reads: the notebook's visible checks against its own records."""
    meta = (nb.get("metadata") or {}).get("workshop") or {}
    assignment = meta.get("assignment") if isinstance(meta, dict) else None
    try:
        ref = reference_of(nb, path)
    except NoChecksError:
        return SelfCheck(None, None, assignment)
    except GradingError as exc:
        raise ExchangeError(str(exc)) from None
    return SelfCheck(ref, grade_submission(ref, path, "you", notebook=nb), assignment if isinstance(assignment, dict)
                     else None)


def assignment_name(nb: dict, path: Path, given: str | None) -> str:
    """The assignment a notebook belongs to: ``given``, its metadata, or its file name."""
    if given:
        return check_name(given)
    meta = (nb.get("metadata") or {}).get("workshop") or {}
    assigned = meta.get("assignment") if isinstance(meta, dict) else None
    if isinstance(assigned, dict) and isinstance(assigned.get("name"), str):
        return check_name(assigned["name"])
    return check_name(path.stem)


@dataclass
class Prepared:
    path: Path
    name: str
    data: bytes
    check: SelfCheck
    saved: datetime


def prepare(course: Course, path: Path, assignment: str | None = None) -> Prepared:
    """Read the saved notebook (as the student: a file they cannot read is refused here) and self-check it."""
    limit = int(course.config()["max_bytes"])
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ExchangeError(f"{path} is not a notebook file; give the .ipynb you saved")
        if info.st_size > limit:
            raise ExchangeError(f"{path} is {mib(info.st_size)}, over the course's limit of {mib(limit)}: clear "
                                "the outputs of the cells that printed the most, save, and hand it in again")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
        nb = parse_notebook_json(data, str(path), limit)
    except PermissionError:
        raise ExchangeError(f"{path}: permission denied; you can only hand in a notebook you can read") from None
    except FileNotFoundError:
        raise ExchangeError(f"{path}: no such notebook; save it first, or give its path") from None
    except GradingError as exc:
        raise ExchangeError(str(exc)) from None
    return Prepared(path, assignment_name(nb, path, assignment), data, self_check(nb, path),
                    datetime.fromtimestamp(info.st_mtime).astimezone())


def send(course: Course, prepared: Prepared) -> dict:
    """Hand the notebook in; the collector's receipt."""
    return request(course, {"op": "submit", "assignment": prepared.name, "size": len(prepared.data)},
                   prepared.data)["receipt"]


def describe(receipt: dict) -> str:
    """A receipt in one line, as the student sees it."""
    when = datetime.fromisoformat(receipt["submitted_at"]).astimezone()
    text = (f"handed in {receipt['assignment']} as {receipt['student']} at {when:%Y-%m-%d %H:%M:%S %Z} "
            f"(hand-in number {receipt['number']}; sha256 {receipt['sha256'][:12]})")
    if receipt.get("late"):
        text += f": LATE by {_duration(receipt['late_by_seconds'])}, the deadline was {receipt['deadline']}"
    elif receipt.get("deadline"):
        text += f": on time, the deadline is {receipt['deadline']}"
    return text


def _duration(seconds: int) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join(parts) or f"{sec} s"


__all__ = ["Prepared", "SelfCheck", "assignment_name", "describe", "prepare", "request", "self_check", "send"]
