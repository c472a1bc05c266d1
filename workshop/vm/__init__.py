"""The built-in micro VM (``qemu:NAME``): a small Debian image built once from
Debian's packages, booted under qemu (KVM when it works, else TCG) with SSH
forwarded to a loopback port and a host key the tool made and pinned.

State lives in the user's data dir (``workshop.paths.data_dir()/vms``); the
built images may live elsewhere (``$WORKSHOP_VM_CACHE``) so that they survive
a throwaway data dir.
"""

from __future__ import annotations

from .image import Image, ImageError, build_image, image_for, images_dir
from .machine import VM, SSHInfo, VMError, kvm_usable, list_vms, vm_dir

__all__ = [
    "Image",
    "ImageError",
    "SSHInfo",
    "VM",
    "VMError",
    "build_image",
    "image_for",
    "images_dir",
    "kvm_usable",
    "list_vms",
    "vm_dir",
]
