"""A tiny initramfs for the micro VM: static busybox, the virtio modules, an /init.

Debian's own initrd starts udev and runs its script framework, which costs
seconds under software emulation; this one loads the few modules the VM needs,
mounts /dev/vda and switches to it.  Written as a "newc" cpio archive.
"""

from __future__ import annotations

import stat
from pathlib import Path

MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_rng")

INIT = """#!/bin/busybox sh
# the micro VM's initramfs: load virtio drivers, mount the root disk, switch to it
PATH=/bin
export PATH
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null; done < /modules.load
init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case "$arg" in init=*) init="${arg#init=}" ;; esac
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
if ! mount -t ext4 -o rw,noatime /dev/vda /root; then
    echo "workshop initramfs: cannot mount /dev/vda" > /dev/console
    poweroff -f
fi
mount --move /dev /root/dev
umount /sys /proc
exec switch_root /root "$init"
"""


def module_closure(modules_dir: Path, wanted: tuple[str, ...] = MODULES) -> list[str]:
    """Module paths (relative to modules_dir) in load order: dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
        base = Path(mod).name.split(".ko")[0].replace("-", "_")  # modprobe's names: virtio-rng.ko is virtio_rng
        by_name[base] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for dep in reversed(deps.get(mod, [])):
            visit(dep)
        order.append(mod)

    for name in wanted:
        if name in by_name:  # a module built into the kernel needs no loading
            visit(by_name[name])
    return order


class _Cpio:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        namebytes = name.encode() + b"\0"
        fields = [
            self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, rdev[0], rdev[1],
            len(namebytes), 0,
        ]
        self.ino += 1
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self.parts.append(header + namebytes)
        self.parts.append(b"\0" * (-(len(header) + len(namebytes)) % 4))
        self.parts.append(data)
        self.parts.append(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = b"".join(self.parts)
        return data + b"\0" * (-len(data) % 512)


def make_initrd(rootfs: Path, kernel_version: str, out: Path) -> list[str]:
    """Write the initramfs for ``kernel_version`` from files in ``rootfs``; return the modules it loads."""
    modules_dir = rootfs / "lib/modules" / kernel_version
    order = module_closure(modules_dir)
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "root", "lib", "lib/modules"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("bin/busybox", (rootfs / "bin/busybox").read_bytes(), 0o755)
    cpio.file("init", INIT.encode(), 0o755)
    names = []
    for mod in order:
        name = Path(mod).name
        names.append(name)
        cpio.file(f"lib/modules/{name}", (modules_dir / mod).read_bytes())
    cpio.file("modules.load", "".join(n + "\n" for n in names).encode())
    out.write_bytes(cpio.finish())
    return names
