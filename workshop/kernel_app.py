"""ipykernel's application as this kernel launches it."""

from __future__ import annotations

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
