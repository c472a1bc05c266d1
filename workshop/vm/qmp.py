"""Just enough of the QEMU Machine Protocol: status and quit over a unix socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from ..errors import VMError


class QMPError(VMError):
    """The VM's monitor did not answer as expected."""


class QMP:
    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise QMPError(f"cannot talk to qemu at {path}: {exc}") from None
        self.file = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        try:
            line = self.file.readline()
        except OSError as exc:
            raise QMPError(f"qemu did not answer: {exc}") from None
        if not line:
            raise QMPError("qemu closed the QMP connection")
        return json.loads(line)

    def command(self, name: str, **arguments) -> object:
        msg: dict = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.file.write(json.dumps(msg).encode() + b"\n")
            self.file.flush()
        except OSError as exc:
            raise QMPError(f"qemu did not take {name}: {exc}") from None
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QMPError(f"{name}: {reply['error'].get('desc', reply['error'])}")
            # events ({"event": ...}) are skipped

    def status(self) -> str:
        result = self.command("query-status")
        assert isinstance(result, dict)
        return str(result.get("status", "unknown"))

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> QMP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
