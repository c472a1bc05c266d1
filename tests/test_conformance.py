"""The standard Jupyter kernel conformance suite (jupyter_kernel_test).

Records are switched off for this class only: the suite requires the error to
be a failing cell's only output message.
"""

from __future__ import annotations

import os
import unittest

import jupyter_kernel_test
import pytest

pytestmark = pytest.mark.slow


class WorkshopKernelConformance(jupyter_kernel_test.KernelTests):
    kernel_name = "workshop"
    language_name = "bash"
    file_extension = ".sh"

    code_hello_world = "echo 'hello, world'"
    code_stderr = "echo 'error' >&2"
    code_generate_error = "false"
    completion_samples = [
        {"text": "ech", "matches": {"echo"}},
        {"text": "ls /pro", "matches": {"/proc/"}},
        {"text": "%ta", "matches": {"%target"}},
        {"text": "%%ch", "matches": {"%%check", "%%chroot"}},
        {"text": "%expect stdout-", "matches": {"stdout-contains"}},
    ]
    code_inspect_sample = "ls"
    complete_code_samples = ["echo hi", "for i in 1 2; do echo $i; done", "%lsmagic"]
    incomplete_code_samples = ["for i in 1 2; do", "echo 'open", "cat <<EOF\nbody"]
    invalid_code_samples = ["fi", "done", "}"]

    @classmethod
    def setUpClass(cls) -> None:
        cls._saved = {k: os.environ.get(k) for k in ("WORKSHOP_RECORDS", "WORKSHOP_TARGET")}
        os.environ["WORKSHOP_RECORDS"] = "0"
        os.environ["WORKSHOP_TARGET"] = "local"
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        for key, value in cls._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    unittest.main()
