"""The language the kernel declares: kernel_info's ``language_info``.

Frontends save it in a notebook's metadata once a kernel answers; a notebook
written with exactly this (the shipped ones, the importer's) opens without
unsaved changes.
"""

from __future__ import annotations

LANGUAGE_INFO = {
    "name": "bash",
    "codemirror_mode": "shell",
    "mimetype": "text/x-sh",
    "file_extension": ".sh",
    "pygments_lexer": "bash",
}
