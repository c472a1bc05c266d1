"""A kernel that does nothing: the floor of ipykernel and the messaging protocol.

Its round trip is what any ipykernel-based kernel pays before running a cell.
"""

from __future__ import annotations

from ipykernel.kernelbase import Kernel


class NullKernel(Kernel):
    implementation = "null"
    implementation_version = "0"
    language = "none"
    language_version = "0"
    language_info = {"name": "none", "mimetype": "text/plain", "file_extension": ".txt"}
    banner = "does nothing"

    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False):
        return {
            "status": "ok",
            "execution_count": self.execution_count,
            "payload": [],
            "user_expressions": {},
        }


if __name__ == "__main__":
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(kernel_class=NullKernel)
