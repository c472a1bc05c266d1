"""The language the kernel declares: kernel_info's ``language_info``.

Frontends save it in a notebook's metadata once a kernel answers; a notebook
written with exactly this (the shipped ones, the importer's) opens without
unsaved changes.
"""

from __future__ import annotations

# codemirror_mode: JupyterLab and Notebook 7 take the language named "workshop" (the
# extension in labextension/: magic lines and %%check sections apart from the shell),
# else the one of the MIME type: bash's.
LANGUAGE_INFO = {
    "name": "bash",
    "codemirror_mode": {"name": "workshop", "mime": "text/x-sh"},
    "mimetype": "text/x-sh",
    "file_extension": ".sh",
    # Pygments (nbconvert's HTML): workshop.highlight's lexer, registered under this name
    "pygments_lexer": "workshop",
}
