"""ipykernel's application as this kernel launches it."""

from __future__ import annotations

import logging

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
        finally:
            self.log.removeFilter(notice)
