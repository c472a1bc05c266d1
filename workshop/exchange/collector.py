"""The collector: the one process that writes submissions, on the Unix socket ``COURSE/collector.sock``.

One request per connection: a JSON line, then for ``submit`` the notebook's bytes; one
JSON line back, ``{"ok": true, ...}`` or ``{"ok": false, "error": SENTENCE}``.  Who asks is
the uid the kernel gives for the socket's peer (``SO_PEERCRED``), never a field of the
request; the time is the collector's clock.  Requests:

- ``{"op": "hello"}``: who the collector takes you for, and the released assignments;
- ``{"op": "submit", "assignment": NAME, "size": BYTES}`` then the notebook: filed, and its
  receipt returned;
- ``{"op": "history", "assignment": NAME}``: the receipts of your own submissions.

It runs as the course directory's owner (root on a course server); run it with
``workshop exchange serve`` (foreground) or ``workshop exchange start``.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import socketserver
import struct
import threading
import traceback
from pathlib import Path

from ..errors import ExchangeError, GradingError
from ..grading.notebook import parse_notebook_json
from .course import USER, Course, json_object, mib, now, parse_time, stamp_name

MAX_HEADER = 4096
TIMEOUT = 30.0  # seconds a connection may take to send its request
MAX_CONNECTIONS = 32
PER_USER = 4  # connections of one user served at once
MIN_FREE = 256 * 2**20  # free bytes the collector leaves on the course's disk
FIELDS = {"hello": {"op"}, "submit": {"op", "assignment", "size"}, "history": {"op", "assignment"}}
AS_SOMEONE = {"student", "user", "username", "uid", "as", "owner", "name"}
A_TIME = {"time", "submitted_at", "timestamp", "date", "mtime", "when"}


class Refused(Exception):
    """A request the collector turns down; the message is the one sentence the student sees."""


def peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return uid


def may_hand_in(user: pwd.struct_passwd, group: str | None) -> bool:
    if not group:
        return True
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return False
    return user.pw_gid == entry.gr_gid or user.pw_name in entry.gr_mem


def _check_fields(request: dict, user: str) -> str:
    op = request.get("op")
    if op not in FIELDS:
        raise Refused(f"unknown request {op!r}; the collector answers hello, submit and history")
    extra = set(request) - FIELDS[op]
    if extra & AS_SOMEONE:
        raise Refused(f"you are connected as {user}, and the collector files everything under the user who "
                      "sends it: a request cannot name another")
    if extra & A_TIME:
        raise Refused("the collector stamps each submission with its own clock: a request cannot set the time")
    if extra:
        raise Refused(f"unknown field(s) in the request: {', '.join(sorted(extra))}")
    return op


class Handler(socketserver.StreamRequestHandler):
    server: Collector

    def handle(self) -> None:
        self.connection.settimeout(TIMEOUT)
        uid = peer_uid(self.connection)
        try:
            with self.server.slot(uid):
                answer = self.answer(uid)
        except Refused as exc:
            answer = {"ok": False, "error": str(exc)}
        except TimeoutError:
            answer = {"ok": False, "error": f"the request did not arrive within {TIMEOUT:g} s"}
        except Exception as exc:  # a bug or a full disk: the student hears of it, the log keeps the trace
            traceback.print_exc()
            answer = {"ok": False, "error": f"the collector failed ({type(exc).__name__}: {exc}); tell your "
                                            "instructor, and hand in again later"}
        try:
            self.wfile.write((json.dumps(answer) + "\n").encode())
        except OSError:
            pass  # the client went away

    def answer(self, uid: int) -> dict:
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            raise Refused("your uid has no account on this machine, so nothing can be filed under it") from None
        line = self.rfile.readline(MAX_HEADER + 1)
        if len(line) > MAX_HEADER or not line.endswith(b"\n"):
            raise Refused("the request is not one JSON line of at most 4 KiB")
        request = json_object(line)
        if request is None:
            raise Refused("the request is not a JSON object")
        op = _check_fields(request, user.pw_name)
        if op == "hello":
            return {"ok": True, "user": user.pw_name, "assignments": self.server.course.names()}
        name = request.get("assignment")
        if not isinstance(name, str):
            raise Refused("the request names no assignment")
        try:
            info = self.server.course.assignment(name)
        except ExchangeError as exc:
            raise Refused(str(exc)) from None
        if op == "history":
            return {"ok": True, "receipts": receipts(self.server.course, name, user.pw_name)}
        return {"ok": True, "receipt": self.server.file(user, info, request.get("size"), self.rfile)}


def receipts(course: Course, name: str, user: str) -> list[dict]:
    """The receipts of ``user``'s submissions of ``name``, oldest first."""
    folder = course.submissions / name / user
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found


class Collector(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, course: Course):
        self.course = course
        self.busy: dict[int, int] = {}  # uid -> connections being served
        self.lock = threading.Lock()  # guards busy
        self.filing = threading.Lock()  # one hand-in filed at a time: counts and names stay exact
        course.must_exist()
        _remove_stale(course.socket)
        old = os.umask(0o111)
        try:
            super().__init__(str(course.socket), Handler)
        finally:
            os.umask(old)
        os.chmod(course.socket, 0o666)  # anyone may connect; who they are comes from the kernel

    @contextlib.contextmanager
    def slot(self, uid: int):
        """A place among the connections being served: a few per user, so that one user's open
        connections cannot keep the others out."""
        with self.lock:
            if self.busy.get(uid, 0) >= PER_USER or sum(self.busy.values()) >= MAX_CONNECTIONS:
                raise Refused("the collector is busy with other hand-ins (or more of yours); try again in a minute")
            self.busy[uid] = self.busy.get(uid, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                self.busy[uid] -= 1

    def file(self, user: pwd.struct_passwd, info: dict, size, stream) -> dict:
        config = self.course.config()
        if user.pw_uid != os.getuid() and not may_hand_in(user, config["group"]):
            raise Refused(f"{user.pw_name} is not in the course group {config['group']}; ask your instructor "
                          "to add you")
        limit = int(config["max_bytes"])
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise Refused("the request gives no size of the notebook in bytes")
        if size > limit:
            raise Refused(f"the notebook is {mib(size)}, over the course's limit of {mib(limit)}: clear the "
                          "outputs of the cells that printed the most, save, and hand it in again")
        data = stream.read(size)
        if len(data) < size:
            raise Refused(f"the notebook arrived cut short ({len(data)} of {size} bytes); hand it in again")
        try:
            parse_notebook_json(data, "what was sent", limit)
        except GradingError as exc:
            raise Refused(f"this is not a notebook that can be graded ({exc})") from None
        with self.filing:
            return self._store(user.pw_name, user.pw_uid, info, data, config)

    def _store(self, user: str, uid: int, info: dict, data: bytes, config: dict) -> dict:
        name = info["name"]
        if not USER.match(user):
            raise Refused(f"the user name {user!r} cannot name a folder; ask your instructor")
        folder = self.course.submissions / name / user
        earlier = len(list(folder.glob("*.ipynb"))) if folder.is_dir() else 0
        if earlier >= int(config["max_submissions"]):
            raise Refused(f"you have handed in {name} {earlier} times, the course's limit; ask your instructor")
        if shutil.disk_usage(self.course.submissions).free < MIN_FREE + len(data):
            raise Refused("the course server's disk is nearly full; tell your instructor")
        for path in (self.course.submissions / name, folder):
            path.mkdir(mode=0o700, exist_ok=True)
        stamp = now()
        deadline = parse_time(info["deadline"]) if info.get("deadline") else None
        late = deadline is not None and stamp > deadline
        receipt = {"assignment": name, "student": user, "uid": uid, "submitted_at": stamp.isoformat(),
                   "deadline": info.get("deadline"), "late": late,
                   "late_by_seconds": round((stamp - deadline).total_seconds()) if late else 0,
                   "number": earlier + 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        base = folder / stamp_name(stamp)
        _write_new(base.with_suffix(".ipynb"), data)
        _write_new(base.with_suffix(".json"), (json.dumps(receipt, indent=2) + "\n").encode())
        return receipt


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _remove_stale(path: Path) -> None:
    """A socket left by a collector that died; refuse to start beside one that answers."""
    if not (path.exists() or path.is_symlink()):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise ExchangeError(f"a collector already answers on {path}; stop it first (workshop exchange stop)")


def serve(course: Course, ready=None) -> None:
    """Serve until SIGTERM or SIGINT; ``ready()`` is called once the socket listens."""
    server = Collector(course)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    try:
        if ready:
            ready()
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        course.socket.unlink(missing_ok=True)


__all__ = ["Collector", "Refused", "may_hand_in", "peer_uid", "receipts", "serve"]
