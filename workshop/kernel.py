"""The Jupyter kernel: messages in, calls on the workshop session, messages out.

Everything about running a cell lives in :mod:`workshop.session`; this module
only speaks the protocol: it streams output to IOPub without outrunning it (or
a Jupyter server's rate limits), shows the record, answers with the error or
ok, turns interrupts into a stopped cell, and hands Tab and Shift-Tab to
:mod:`workshop.completion` and :mod:`workshop.inspection`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ipykernel._version import kernel_protocol_version
from ipykernel.kernelbase import Kernel
from traitlets import Float

from . import __version__
from .coalesce import StreamCoalescer
from .completion import complete
from .console import is_complete
from .display import display_bundle
from .inspection import help_links, inspect
from .kernel_app import WorkshopKernelApp
from .language import LANGUAGE_INFO
from .notebook_file import NotebookFile
from .pacing import StreamPacer
from .session import CellRun, Session
from .settings import Settings
from .text import Notice

# Stream messages that may wait for ipykernel's IOPub thread before the shell's
# output is held back: the shell can print faster than messages leave, and an
# unbounded queue would grow with the output.
IOPUB_BACKLOG = 32


class WorkshopKernel(Kernel, Settings):
    """A thin adapter over :class:`Session`.  Its settings are :class:`Settings`
    traits, so ``--WorkshopKernel.timeout=30`` and config files work."""

    implementation = "workshop"
    implementation_version = __version__
    language = "bash"
    language_version = "5"
    language_info = LANGUAGE_INFO
    banner = "Workshop: bash cells in a persistent shell, on this machine or over SSH"
    # ipykernel sleeps this long after each cell to let forwarded Python output
    # drain; this kernel forwards none, so the sleep is pure latency.
    _execute_sleep = Float(0.0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # Settings.__init__ reads WORKSHOP_* here
        # True while the main thread blocks in a wait that only an exception can
        # end (the input box, a VM booting): an interrupt then raises KeyboardInterrupt.
        self._in_blocking_wait = False
        # the notebook a Jupyter server names is read here, in the front end, and passed in
        self.workshop_session = Session(self, notebook=NotebookFile.named_by_server(),
                                        blocking_wait=self._blocking_wait,
                                        default_timeout=self.notebook_timeout if _server_started() else None)
        self._last_record: dict | None = None
        # a Jupyter server's kernel serves a person at a browser, who presses Tab: fetch what it offers ahead
        self.workshop_session.offers.ahead = _server_started()
        self._idle_stop: asyncio.TimerHandle | None = None
        self._pacer = StreamPacer(self._stream, self.iopub_data_rate_limit) if self._paced() else None
        if self._pacer and self.server_output_limit:  # a browser shows it: what a tab renders at once
            self.workshop_session.shown_limit = min(self.output_limit or self.server_output_limit, self.server_output_limit)
        self._output = StreamCoalescer(self._pacer.write if self._pacer else self._stream)
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not in the main thread (embedded use)
            pass

    def _paced(self) -> bool:
        """A Jupyter server (it sets JPY_SESSION_NAME) relays output under rate limits;
        nbclient (`workshop run`) and jupyter console talk to the kernel directly."""
        if self.iopub_pacing == "auto":
            return _server_started()
        return self.iopub_pacing == "on"

    @contextlib.contextmanager
    def _blocking_wait(self) -> Iterator[None]:
        self._in_blocking_wait = True
        try:
            yield
        finally:
            self._in_blocking_wait = False

    # ---- execution -------------------------------------------------------
    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: dict | None = None, allow_stdin: bool = False, *,
                         cell_meta: dict | None = None, cell_id: str | None = None) -> dict:
        self._allow_stdin = allow_stdin  # what raw_input/getpass consult
        pacer = None if silent else self._pacer
        run = self.workshop_session.run_cell(
            code,
            on_output=None if silent else self._output.write,
            on_input=self._input if allow_stdin else None,
            on_progress=None if silent else self._progress_display(),
            on_display=None if silent else self._display,
            cell_id=cell_id, cell_meta=cell_meta,
            execution_count=self.execution_count,
            session_id=self.session.session if self.session else "",
        )
        self._last_record = run.record.as_dict()
        self._output.flush()
        if pacer:
            pacer.settle()  # the record and the error must not fall to the server's limit
        if not silent:
            self._show(run)
        self._arm_idle_stop()
        if run.error is not None:
            return {"status": "error", "execution_count": self.execution_count, "ename": run.error.ename,
                    "evalue": run.error.evalue, "traceback": [_red(run.error.evalue)]}
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}

    def _arm_idle_stop(self) -> None:
        """A VM restored for this kernel stops after ``vm_idle_minutes`` without a cell (on
        the loop cells run on, so never under one); the next cell restores a new one."""
        if self._idle_stop is not None:
            self._idle_stop.cancel()
            self._idle_stop = None
        if self.vm_restore and self.vm_idle_minutes:
            minutes = self.vm_idle_minutes
            self._idle_stop = asyncio.get_running_loop().call_later(
                minutes * 60, self.workshop_session.release_idle_target,
                f"it was stopped after {minutes:g} idle minutes, with the files in it")

    def _show(self, run: CellRun) -> None:
        if run.error is not None:
            self.send_response(self.iopub_socket, "error", {
                "ename": run.error.ename, "evalue": run.error.evalue, "traceback": [_red(run.error.evalue)]})
        if self.records and run.record.shown:
            self.send_response(self.iopub_socket, "display_data",
                               {"data": run.record.bundle(said=run.error.ename if run.error else ""),
                                "metadata": {}, "transient": {}})

    def _display(self, name: str, data_b64: str) -> None:
        self._output.flush()  # what the cell printed before it comes first
        self.send_response(self.iopub_socket, "display_data",
                           {"data": display_bundle(name, data_b64), "metadata": {}, "transient": {}})

    def _stream(self, name: str, text: str) -> None:
        self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})
        self._wait_for_iopub()

    def _wait_for_iopub(self, patience: float = 10.0) -> None:
        """Hold output back while ipykernel's IOPub thread is behind, so memory
        stays bounded however much a cell prints (the queue is ipykernel's own)."""
        queue = getattr(self.iopub_thread, "_events", None)
        if queue is None or len(queue) <= IOPUB_BACKLOG:
            return
        deadline = time.monotonic() + patience  # a stuck thread must not stop the kernel
        while len(queue) > IOPUB_BACKLOG and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _progress_display(self):
        """A sink for the target's getting-ready steps: one display updated in place, the notices
        (a fallback and its reason) kept above the current step."""
        display_id = f"workshop-prepare-{os.getpid()}-{time.monotonic_ns()}"
        shown: list[str] = []
        notices: list[str] = []

        def progress(text: str) -> None:
            self._output.flush()  # what the cell printed comes first
            spec = self.workshop_session.target.spec
            lines = [f"{spec}: {line}" for line in (*notices, text) if line]
            if isinstance(text, Notice):
                notices.append(text)
            content = {"data": {"text/plain": "\n".join(lines)}, "metadata": {}, "transient": {"display_id": display_id}}
            self.send_response(self.iopub_socket, "update_display_data" if shown else "display_data", content)
            shown.append(text)

        return progress

    def _input(self, prompt: str, password: bool) -> str | None:
        self._output.flush()  # what the cell printed before it asked
        try:
            with self._blocking_wait():
                return self.getpass(prompt) if password else self.raw_input(prompt)
        except (EOFError, KeyboardInterrupt):
            return None
        except Exception:  # StdinNotImplementedError and friends: behave as EOF
            self.log.warning("input request failed", exc_info=True)
            return None

    def finish_metadata(self, parent, metadata, reply_content):
        metadata = super().finish_metadata(parent, metadata, reply_content)
        if self._last_record is not None:
            metadata["workshop"] = self._last_record
            self._last_record = None
        return metadata

    # ---- interrupts ------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        # Signal handlers must not block on the locks the reading thread holds.
        threading.Thread(target=self.workshop_session.interrupt, daemon=True).start()
        if self._in_blocking_wait:
            # ipykernel waits for an input reply until a KeyboardInterrupt, and a
            # booting VM until it is up: the interrupt ends the wait.
            raise KeyboardInterrupt

    async def interrupt_request(self, stream, ident, parent):
        self.workshop_session.interrupt()
        if self._in_blocking_wait:
            os.kill(os.getpid(), signal.SIGINT)  # to end the wait in the main thread
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    # ---- completion, inspection and is_complete ----------------------------
    async def do_complete(self, code: str, cursor_pos: int) -> dict:
        return complete(code, cursor_pos, self.workshop_session.complete)

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections=()) -> dict:
        return inspect(code, cursor_pos, detail_level, self.workshop_session)

    async def do_is_complete(self, code: str) -> dict:
        return is_complete(code)

    # ---- what this kernel does not do ----------------------------------
    @property
    def kernel_info(self) -> dict:
        # ipykernel advertises subshells and a debugger; one shell per kernel has neither.
        # Not super().kernel_info: it imports ipykernel.debugger (debugpy), a tenth of the start.
        return {"protocol_version": kernel_protocol_version, "implementation": self.implementation,
                "implementation_version": self.implementation_version, "language_info": self.language_info,
                "banner": self.banner, "help_links": help_links(), "supported_features": []}

    async def create_subshell_request(self, socket, ident, parent) -> None:
        self._refuse(socket, ident, parent, "create_subshell_reply")

    async def delete_subshell_request(self, socket, ident, parent) -> None:
        self._refuse(socket, ident, parent, "delete_subshell_reply")

    async def list_subshell_request(self, socket, ident, parent) -> None:
        self._refuse(socket, ident, parent, "list_subshell_reply")

    async def debug_request(self, stream, ident, parent) -> None:
        self._refuse(stream, ident, parent, "debug_reply")

    def _refuse(self, socket, ident, parent, reply_type: str) -> None:
        what = reply_type.removesuffix("_reply").replace("_", " ")
        text = f"this kernel runs one shell and has no debugger: {what} is not supported"
        self.session.send(socket, reply_type, {"status": "error", "ename": "NotSupported", "evalue": text,
                                               "traceback": []}, parent, ident=ident)

    # ---- shutdown --------------------------------------------------------
    async def do_shutdown(self, restart: bool) -> dict:
        self.workshop_session.close()
        return {"status": "ok", "restart": restart}


def _server_started() -> bool:
    """A Jupyter server started this kernel for a notebook (it sets JPY_SESSION_NAME);
    nbclient (`workshop run`, papermill) and jupyter console do not."""
    return bool(os.environ.get("JPY_SESSION_NAME"))


def _red(text: str) -> str:
    return f"\x1b[0;31m{text}\x1b[0m"


def main() -> None:
    # The kernel writes nothing to Python's stdout, so no OutStream forwarding:
    # it saves two threads, and ipykernel's control thread can otherwise hang at
    # shutdown flushing a stream whose I/O thread has already stopped.
    WorkshopKernelApp.launch_instance(kernel_class=WorkshopKernel, outstream_class=None)
    WorkshopKernelApp.instance().let_the_control_thread_finish()
    # Shut down: the session's teardown is done and ipykernel's exit functions close its
    # sockets (they wait for the last messages to leave).  What is left is the interpreter
    # freeing its modules one by one: seconds on a loaded machine, past the 2.5 s a Jupyter
    # client waits before it sends SIGTERM.  Nothing of this kernel needs it.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
