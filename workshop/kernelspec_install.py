"""Install the kernelspec shipped in kernel/ so Jupyter can start this kernel, and
beside it the JupyterLab extension that highlights its cells (labextension/)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

KERNEL_NAME = "workshop"
LABEXTENSION = "workshop-highlight"  # its package.json's name, as JupyterLab finds it


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
        path = KernelSpecManager().install_kernel_spec(
            str(dest), kernel_name=KERNEL_NAME, user=user, prefix=prefix
        )
    # JupyterLab and Notebook 7 look for extensions in the same data directories as kernels
    extension = _labextension_dir(path)
    shutil.rmtree(extension, ignore_errors=True)
    shutil.copytree(Path(str(resources.files("workshop") / "labextension")), extension)
    return path


def _labextension_dir(kernel_dir: str) -> Path:
    """<data>/labextensions/workshop-highlight for the kernel in <data>/kernels/workshop."""
    return Path(kernel_dir).parent.parent / "labextensions" / LABEXTENSION


def remove() -> str | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        path = KernelSpecManager().remove_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return None
    shutil.rmtree(_labextension_dir(path), ignore_errors=True)
    return path
