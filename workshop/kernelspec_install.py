"""Install the kernelspec shipped in kernel/ so Jupyter can start this kernel."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

KERNEL_NAME = "workshop"


def spec_source() -> Path:
    return Path(str(resources.files("workshop") / "kernelspec"))


def install(user: bool = False, prefix: str | None = None) -> str:
    """Install for this Python (argv uses sys.executable); returns the path."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / KERNEL_NAME
        shutil.copytree(spec_source(), dest)
        spec_file = dest / "kernel.json"
        spec = json.loads(spec_file.read_text())
        spec["argv"][0] = sys.executable
        spec_file.write_text(json.dumps(spec, indent=2) + "\n")
        return KernelSpecManager().install_kernel_spec(
            str(dest), kernel_name=KERNEL_NAME, user=user, prefix=prefix
        )


def remove() -> str | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        return KernelSpecManager().remove_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return None
