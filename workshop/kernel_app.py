"""ipykernel's application as this kernel launches it."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import zmq
from ipykernel.kernelapp import IPKernelApp

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _UnencryptedTCPNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "without encryption" not in record.getMessage()


class WorkshopKernelApp(IPKernelApp):
    """ipykernel's app, without its warning about unencrypted TCP when the
    kernel's ports are on loopback (as Jupyter and `workshop run` start it): it
    would print on every headless run, and only this machine's own users can
    reach those ports. Elsewhere the warning stays."""

    def init_sockets(self) -> None:
        notice = _UnencryptedTCPNotice()
        if self.ip in LOOPBACK:
            self.log.addFilter(notice)
        try:
            super().init_sockets()
        except zmq.ZMQError as e:
            # A port the connection file names was taken between the choice and
            # the bind. ipykernel leaves the sockets it did bind open, and zmq
            # then waits for them at exit: the kernel would hang, alive and deaf,
            # forever. Ending now lets whoever started it see it die; Jupyter's
            # restarter starts it again on new ports.
            sys.stderr.write(f"workshop kernel: cannot listen on the ports of its connection file ({e}); "
                             "start the kernel again.\n")
            sys.stderr.flush()
            os._exit(1)
        finally:
            self.log.removeFilter(notice)

    def let_the_control_thread_finish(self, patience: float = 10.0) -> None:
        """The shell's loop stops as soon as the control thread has sent the shutdown reply,
        but that thread then publishes the request's `idle` status.  ipykernel's exit
        functions close every socket, that thread's among them, and a zmq socket closed
        under a thread sending on it aborts the process (libzmq's `pfd.revents & POLLIN`):
        the kernel died with SIGABRT, and the client lost its `idle`.  So the control
        thread ends first; bounded, a stuck thread must not keep the kernel alive."""
        control = self.control_thread
        if control is not None and control.is_alive():
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: the thread is ending
                control.stop()
            control.join(timeout=patience)
