"""Drive a real workshop kernel over the Jupyter messaging protocol."""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import zmq
from jupyter_client.manager import KernelManager


def stop(procs: list[subprocess.Popen]) -> None:
    """End test servers (a Dask scheduler, its workers) in the order given:
    SIGTERM, then SIGKILL for one that has not ended in 20 s."""
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def loopback_listener() -> tuple[socket.socket, list[str]]:
    """A TCP listener on the host's loopback, and the peers that reached it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.5)
    reached: list[str] = []

    def serve() -> None:
        while sock.fileno() != -1:
            try:
                conn, peer = sock.accept()
            except OSError:
                continue
            reached.append(str(peer))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock, reached


def three_free_ports() -> int:
    """The first of three free ports in a row on loopback (a hub's, its API's and its proxy's)."""
    for _ in range(50):
        base = 20000 + secrets.randbelow(20000)
        try:
            for port in range(base, base + 3):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three free ports in a row on loopback")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would choose a notebook or target
    for a kernel started from it, plus ``extra``."""
    env = dict(os.environ)
    env.pop("JPY_SESSION_NAME", None)
    env.pop("WORKSHOP_TARGET", None)
    env.update(extra)
    return env

WS_V1 = "v1.kernel.websocket.jupyter.org"
RECORD_MIME = "application/vnd.workshop.record+json"


@dataclass
class Result:
    reply: dict
    messages: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def stream(self, name: str) -> str:
        return "".join(
            m["content"]["text"] for m in self.messages if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")

    @property
    def errors(self) -> list[dict]:
        return [m["content"] for m in self.messages if m["msg_type"] == "error"]

    @property
    def record(self) -> dict | None:
        for m in self.messages:
            if m["msg_type"] == "display_data" and RECORD_MIME in m["content"]["data"]:
                return m["content"]["data"][RECORD_MIME]
        return None

    @property
    def exit_status(self) -> int | None:
        rec = self.reply["metadata"].get("workshop")
        return rec["exit_status"] if rec else None


class KernelHarness:
    def __init__(self, env: dict[str, str], kernel_name: str = "workshop"):
        # jupyter_client chooses the kernel's five ports before the kernel binds
        # them; another process (an sshd or kernel a test starts meanwhile) may
        # take one in between, and the kernel then dies at start ("Address
        # already in use"). That is the machine's race, not the kernel's: start
        # again on fresh ports. A kernel that is alive and silent still fails.
        for attempt in range(3):
            self.km = KernelManager(kernel_name=kernel_name)
            self.km.start_kernel(env=env)
            self.kc = self.km.client()
            self.kc.start_channels()
            try:
                self.kc.wait_for_ready(timeout=60)
                return
            except RuntimeError:
                if self.km.is_alive() or attempt == 2:
                    raise
                self.kc.stop_channels()
                self.km.cleanup_resources()

    def run(self, code: str, timeout: float = 60, allow_stdin: bool = False, on_input=None,
            metadata: dict | None = None) -> Result:
        """Execute ``code``; collect every iopub message of it until idle.
        ``metadata``: the execute request's (as a notebook runner sends it)."""
        if metadata is None:
            msg_id = self.kc.execute(code, allow_stdin=allow_stdin)
        else:
            content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                       "allow_stdin": allow_stdin, "stop_on_error": True}
            msg = self.kc.session.msg("execute_request", content, metadata=metadata)
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        reply = None
        idle = False
        while not (idle and reply is not None):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {code!r} within {timeout} s")
            if allow_stdin and on_input is not None:
                try:
                    req = self.kc.stdin_channel.get_msg(timeout=0.01)
                    answer = on_input(req["content"]["prompt"], req["content"]["password"])
                    if answer is not None:  # None: leave the request unanswered
                        self.kc.input(answer)
                except queue.Empty:
                    pass
            if reply is None:
                try:
                    msg = self.kc.shell_channel.get_msg(timeout=0.01)
                    if msg["parent_header"].get("msg_id") == msg_id:
                        reply = msg
                except queue.Empty:
                    pass
            try:
                msg = self.kc.iopub_channel.get_msg(timeout=0.01 if not idle else 0.05)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            elif msg["msg_type"] not in ("status", "execute_input"):
                messages.append(msg)
        return Result(reply=reply, messages=messages)

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def complete(self, code: str, cursor: int | None = None) -> dict:
        return self.kc.complete(code, len(code) if cursor is None else cursor, reply=True, timeout=30)["content"]

    def tab_until(self, code: str, wanted, seconds: float = 10) -> list[str]:
        """Tab at the end of ``code`` until ``wanted(matches)``, as a student presses it
        again: what Tab offers is fetched in the background, and a Tab that would
        wait too long answers from what was fetched before."""
        deadline = time.monotonic() + seconds
        while True:
            matches = self.complete(code)["matches"]
            if wanted(matches) or time.monotonic() > deadline:
                return matches
            time.sleep(0.2)

    def is_complete(self, code: str) -> dict:
        msg_id = self.kc.is_complete(code)
        while True:
            msg = self.kc.shell_channel.get_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]

    def run_in_background(self, code: str, timeout: float = 120) -> threading.Thread:
        """Run ``code`` in a thread, for a test that kills the kernel under it (then no reply comes)."""
        def run() -> None:
            try:
                self.run(code, timeout=timeout)
            except (zmq.ZMQError, TimeoutError, AssertionError):  # AssertionError: jupyter_client's, its channels stopped
                pass

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def kill(self) -> None:
        """kill -9 the kernel process, as a crash or an OOM kill would (if it still runs)."""
        process = self.km.provisioner.process if self.km.provisioner is not None else None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        try:
            self.kc.stop_channels()
        except Exception:
            pass

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


class KernelSocket:
    """A kernel's websocket as JupyterLab 4 uses it (v1 binary protocol), ``url`` being
    ``ws://HOST:PORT[/user/NAME]/api/kernels/ID/channels``; the token in the URL, or
    in the Authorization header (``in_header``, as a hub's single-user server wants it)."""

    def __init__(self, url: str, token: str, in_header: bool = False):
        import websocket  # websocket-client, a dependency of jupyter_server

        self.session = uuid.uuid4().hex
        query = f"?session_id={self.session}" + ("" if in_header else f"&token={token}")
        self.ws = websocket.create_connection(url + query, subprotocols=[WS_V1], timeout=120,
                                              header=[f"Authorization: token {token}"] if in_header else None)

    def execute(self, cell_id: str, code: str, timeout: float = 180) -> tuple[list[dict], dict]:
        """Run one cell; the IOPub messages the server forwarded for it, and the reply."""
        from jupyter_server.services.kernels.connection.base import (
            deserialize_msg_from_ws_v1,
            serialize_msg_to_ws_v1,
        )

        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "student",
                  "session": self.session, "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}
        msg = {"header": header, "parent_header": {},
               "metadata": {"cellId": cell_id, "deletedCells": [], "recordTiming": False, "trusted": True},
               "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}
        self.ws.send_binary(serialize_msg_to_ws_v1(msg, "shell", lambda part: json.dumps(part).encode()))
        messages: list[dict] = []
        reply, idle = None, False
        deadline = time.monotonic() + timeout
        while not (reply and idle):
            assert time.monotonic() < deadline, f"cell {cell_id} did not finish in {timeout} s"
            channel, parts = deserialize_msg_from_ws_v1(self.ws.recv())
            got = {key: json.loads(part) for key, part in zip(("header", "parent_header", "metadata", "content"),
                                                            parts, strict=False)}
            if got["parent_header"].get("msg_id") != msg_id:
                continue
            kind = got["header"]["msg_type"]
            if channel == "shell" and kind == "execute_reply":
                reply = got
            elif channel == "iopub" and kind == "status":
                idle = idle or got["content"]["execution_state"] == "idle"
            elif channel == "iopub" and kind != "execute_input":
                messages.append(got)
        return messages, reply

    def close(self) -> None:
        self.ws.close()
