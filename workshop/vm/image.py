"""Build (once) and cache the micro VM's Debian image.

Two cached stages, each keyed by a digest of what went into it:

- ``base-KEY/rootfs``: the result of ``debootstrap`` with the packages below
  (downloaded .debs are kept in ``debs/`` next to it);
- ``KEY/``: the bootable image made from a copy of that rootfs: the guest's
  SSH host key and root's client key (both generated here, on the host), the
  guest's configuration, the kernel and initrd taken out of it, and an ext4
  disk image written with ``mkfs.ext4 -d`` (no loop mounts).

Changing the guest configuration rebuilds only the second stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import VMError
from ..lock import FileLock
from ..paths import data_dir
from ..settings import Settings
from .initrd import INIT, MODULES, make_initrd

SUITE = "bookworm"
PACKAGES = (
    "openssh-server",
    "busybox-static",
    "util-linux",
    "iproute2",
    "procps",
    "psmisc",
    "cgroup-tools",
    "runc",
    "python3",  # the "container in Python" notebook (ctypes is not in python3-minimal)
    "golang-go",  # the "container in Go" notebook: Go 1.19 ships its standard library compiled, so builds are quick
    "perl",  # Digest::SHA: the shell relay takes only signed input (perl-base alone has no digest)
    "kmod",
    "docker.io",  # the lab's Docker engine, started at boot (rcS); images are imported, never pulled
    "docker-registry",  # notebook 07 starts one on loopback for skopeo
    "skopeo",  # notebook 07 copies images between the engine, OCI layouts, directories and that registry
    "containernetworking-plugins",  # skopeo's container-network-stack, a virtual package debootstrap cannot choose
    "systemd-sysv",
    "linux-image-cloud-amd64",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
FREE_SPACE_MB = 2048  # room for the students' work on top of the system
# Bump when the guest configuration written by _configure changes.
CONFIG_VERSION = "4"

Progress = Callable[[str], None]


class ImageError(VMError):
    """The image cannot be built; the message says how to fix it."""


def images_dir() -> Path:
    """``$WORKSHOP_VM_CACHE`` if set (a cache that outlives the data dir), else data_dir()/vms/images."""
    explicit = Settings().vm_cache
    path = Path(explicit) if explicit else data_dir() / "vms" / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mirror() -> str:
    return Settings().vm_mirror or DEFAULT_MIRROR


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def base_key() -> str:
    return _digest(SUITE, _mirror(), "minbase", *sorted(PACKAGES))


def image_key() -> str:
    return _digest(base_key(), CONFIG_VERSION, _guest_files_digest(), INIT, *MODULES)


@dataclass
class Image:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.raw"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_key_pub(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"

    @property
    def meta(self) -> dict:
        try:
            return json.loads((self.dir / "image.json").read_text())
        except (OSError, ValueError):
            return {}

    @property
    def built(self) -> bool:
        return (self.dir / "image.json").exists() and self.disk.exists()

    def host_key_line(self) -> tuple[str, str]:
        """(key type, base64) of the guest's host key."""
        kind, b64 = self.host_key_pub.read_text().split()[:2]
        return kind, b64


def image_for() -> Image:
    return Image(images_dir() / f"{SUITE}-{image_key()}")


def build_image(progress: Progress | None = None, force: bool = False) -> tuple[Image, bool]:
    """Return the cached image, building it first if needed; (image, built_now)."""
    say = progress or (lambda text: None)
    image = image_for()
    if image.built and not force:
        return image, False
    _check_tools()
    with FileLock(images_dir() / ".build.lock", "another workshop process is building the VM image", say):
        if image.built and not force:
            return image, False
        started = time.monotonic()
        base = _base_rootfs(say)
        _make_image(base, image, say)
        meta = image.meta
        meta["build_seconds"] = round(time.monotonic() - started, 1)
        (image.dir / "image.json").write_text(json.dumps(meta, indent=2))
        say(f"image ready in {meta['build_seconds']:.0f} s: {image.dir}")
        _prune(image.dir, base.parent)
        return image, True


def _prune(keep_image: Path, keep_base: Path) -> None:
    """Remove images and base systems of older configurations.  A VM still
    running on an old image keeps its open file; on its next `up` it starts
    from the new image."""
    for entry in images_dir().iterdir():
        old_image = entry.name.startswith(f"{SUITE}-") and entry != keep_image
        old_base = entry.name.startswith("base-") and entry != keep_base
        if entry.is_dir() and (old_image or old_base):
            shutil.rmtree(entry, ignore_errors=True)


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise ImageError(
            "building the VM image needs root (debootstrap makes device nodes and chroots): "
            "run `sudo workshop vm up NAME` once; later boots need no root"
        )
    missing = [tool for tool in ("debootstrap", "mkfs.ext4", "ssh-keygen") if not _which(tool)]
    if missing:
        pkgs = {"debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "ssh-keygen": "openssh-client"}
        raise ImageError(
            f"building the VM image needs {', '.join(missing)}: "
            f"apt-get install {' '.join(pkgs[m] for m in missing)}"
        )


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.path.exists(p)), None
    )


def _run_streaming(cmd: list[str], say: Progress, prefix: str, log: Path) -> None:
    with open(log, "ab") as logf:
        # its own process group, so that an interrupted build stops all of it
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                logf.write(raw)
                line = raw.decode(errors="replace").strip()
                if line.startswith(("I: ", "W: ", "E: ")):
                    say(f"{prefix}: {line[3:]}")
            status = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if status != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise ImageError(f"{cmd[0]} failed (exit {status}); the end of {log}:\n" + "\n".join(tail))


def _base_rootfs(say: Progress) -> Path:
    root = images_dir()
    base = root / f"base-{SUITE}-{base_key()}"
    rootfs = base / "rootfs"
    if (base / ".complete").exists():
        return rootfs
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    debs = root / "debs"
    debs.mkdir(exist_ok=True)
    cmd = [
        _which("debootstrap") or "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        f"--cache-dir={debs}",
        SUITE,
        str(rootfs),
        _mirror(),
    ]
    say(f"debootstrap {SUITE} ({len(PACKAGES)} packages and their dependencies)")
    _run_streaming(cmd, say, "debootstrap", base / "debootstrap.log")
    for leftover in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    (base / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    return rootfs


def _make_image(base: Path, image: Image, say: Progress) -> None:
    staging = image.dir.with_name(image.dir.name + ".building")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    rootfs = staging / "rootfs"
    say("copying the base system")
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)], check=True)
    say("generating the guest's host key and root's client key")
    keygen = _which("ssh-keygen") or "ssh-keygen"
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "workshop-vm-host", "-f", str(staging / "ssh_host_ed25519_key")],
        check=True,
    )
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "workshop-vm-client", "-f", str(staging / "id_ed25519")],
        check=True,
    )
    say("configuring the guest")
    _configure(rootfs, staging)
    kernel = _kernel_file(rootfs)
    shutil.copy2(kernel, staging / "vmlinuz")
    version = kernel.name[len("vmlinuz-"):]
    modules = make_initrd(rootfs, version, staging / "initrd.img")
    used_mb = _du_mb(rootfs)
    size_mb = used_mb + max(used_mb // 5, 64) + FREE_SPACE_MB
    say(f"writing the ext4 image ({used_mb} MB used, {size_mb} MB in all, sparse)")
    disk = staging / "disk.raw"
    mkfs = _which("mkfs.ext4") or "mkfs.ext4"
    done = subprocess.run(
        [mkfs, "-q", "-F", "-L", "workshop-root", "-d", str(rootfs), "-E", "root_owner=0:0", str(disk), f"{size_mb}M"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ImageError(f"mkfs.ext4 failed: {done.stderr.strip()}")
    shutil.rmtree(rootfs)
    meta = {
        "suite": SUITE,
        "packages": list(PACKAGES),
        "kernel": kernel.name,
        "initrd_modules": modules,
        "base": base.parent.name,
        "config_version": CONFIG_VERSION,
        "size_mb": size_mb,
        "used_mb": used_mb,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (staging / "image.json").write_text(json.dumps(meta, indent=2))
    if image.dir.exists():
        shutil.rmtree(image.dir)
    staging.rename(image.dir)


def _du_mb(path: Path) -> int:
    out = subprocess.run(["du", "-sm", "--apparent-size", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _kernel_file(rootfs: Path) -> Path:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageError(f"no kernel in {rootfs}/boot: linux-image-cloud-amd64 did not install")
    return kernels[-1]


# ---- the guest's configuration -------------------------------------------------

GUEST_FILES: dict[str, str] = {
    "etc/hostname": "workshop\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\tworkshop\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/fstab": "/dev/vda\t/\text4\tdefaults,noatime,discard,errors=remount-ro\t0\t0\n",
    # qemu's user network: fixed addresses, no DHCP wait.
    "etc/systemd/network/10-qemu.network": (
        "[Match]\nName=eth0 en*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    ),
    "etc/resolv.conf": "nameserver 10.0.2.3\n",
    "etc/ssh/sshd_config.d/workshop.conf": (
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
        # no PAM session stack (motd scripts, pam_systemd): logins are quicker
        "UsePAM no\n"
        "MaxSessions 64\n"
        "MaxStartups 64:30:128\n"
    ),
    "etc/systemd/journald.conf.d/workshop.conf": "[Journal]\nStorage=volatile\nForwardToConsole=no\n",
    # A small init (busybox's) for fast boots: mounts, network, sshd; systemd
    # stays installed and boots instead with WORKSHOP_VM_INIT=systemd.
    "etc/inittab": (
        "::sysinit:/usr/lib/workshop/rcS\n"
        "::respawn:/usr/sbin/sshd -D -e\n"
        "::ctrlaltdel:/usr/lib/workshop/init poweroff\n"
        "::shutdown:/usr/lib/workshop/shutdown\n"
    ),
    "usr/lib/workshop/rcS": """#!/bin/busybox sh
# Bring the micro VM up: file systems, cgroup v2 with its controllers, network,
# sshd's dirs. busybox applets: a static binary starts fast under emulation.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
bb=/bin/busybox
mnt() { $bb grep -qs " $3 " /proc/mounts || { $bb mkdir -p "$3"; $bb mount -t "$1" -o "$4" "$2" "$3"; }; }
mnt proc proc /proc nosuid,nodev,noexec
mnt sysfs sysfs /sys nosuid,nodev,noexec
mnt devtmpfs devtmpfs /dev nosuid,mode=0755
mnt devpts devpts /dev/pts nosuid,noexec,gid=5,mode=0620,ptmxmode=0666
mnt tmpfs tmpfs /dev/shm nosuid,nodev
mnt tmpfs tmpfs /run nosuid,nodev,mode=0755
mnt cgroup2 cgroup2 /sys/fs/cgroup nosuid,nodev,noexec,nsdelegate
# discard: a file deleted in the guest gives its blocks back to the host (qemu's
# discard=unmap punches them out of the VM's disk file), so the disk does not only grow
$bb mount -o remount,rw,discard /
for c in cpuset cpu io memory pids; do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
done
$bb hostname -F /etc/hostname
$bb ip link set lo up
for dev in /sys/class/net/*; do
    dev=${dev##*/}
    [ "$dev" = lo ] && continue
    $bb ip addr add 10.0.2.15/24 dev "$dev"
    $bb ip link set "$dev" up
    $bb ip route add default via 10.0.2.2
    break
done
$bb mkdir -p /run/sshd /run/lock /var/log
$bb chmod 0755 /run/sshd
[ -s /etc/machine-id ] || $bb tr -d - < /proc/sys/kernel/random/uuid > /etc/machine-id
# The lab's Docker engine, in the background (no bridge, no iptables: containers get
# loopback only, as with --network none); it ends with the VM.
if [ -x /usr/sbin/dockerd ]; then
    $bb mkdir -p /run/workshop
    /usr/sbin/dockerd --pidfile /run/workshop/dockerd.pid --bridge=none --iptables=false \
        </dev/null >/var/log/workshop-dockerd.log 2>&1 &
fi
read -r up _ < /proc/uptime
echo "workshop: rcS done after $up s" > /dev/console
""",
    "usr/lib/workshop/shutdown": """#!/bin/sh
killall5 -TERM 2>/dev/null; sleep 1; killall5 -KILL 2>/dev/null
sync
mount -o remount,ro / 2>/dev/null
""",
    "etc/motd": "workshop micro VM (Debian bookworm). Reached with `workshop vm ssh-info`.\n",
}

# Units that only slow a short-lived VM's boot down.
MASKED_UNITS = (
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
    "systemd-timesyncd.service",
)
ENABLED_UNITS = {
    "systemd-networkd.service": "multi-user.target.wants",
    "ssh.service": "multi-user.target.wants",
}


def _guest_files_digest() -> str:
    return _digest(json.dumps(GUEST_FILES, sort_keys=True), *MASKED_UNITS, json.dumps(ENABLED_UNITS, sort_keys=True))


def _configure(rootfs: Path, keys: Path) -> None:
    for rel, text in GUEST_FILES.items():
        path = rootfs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(text)
        if text.startswith("#!"):
            os.chmod(path, 0o755)
    # the host key the tool generated is the only one the guest offers
    ssh_dir = rootfs / "etc/ssh"
    for old in ssh_dir.glob("ssh_host_*"):
        old.unlink()
    shutil.copy2(keys / "ssh_host_ed25519_key", ssh_dir / "ssh_host_ed25519_key")
    shutil.copy2(keys / "ssh_host_ed25519_key.pub", ssh_dir / "ssh_host_ed25519_key.pub")
    os.chmod(ssh_dir / "ssh_host_ed25519_key", 0o600)
    # root logs in with the per-image client key
    root_ssh = rootfs / "root/.ssh"
    root_ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(keys / "id_ed25519.pub", root_ssh / "authorized_keys")
    os.chmod(root_ssh / "authorized_keys", 0o600)
    _set_root_password_unusable(rootfs)
    # busybox's init, called "init" so that busybox runs that applet
    init = rootfs / "usr/lib/workshop/init"
    if init.exists() or init.is_symlink():
        init.unlink()
    init.symlink_to("/bin/busybox")
    # a fresh machine-id on first boot of each VM
    machine_id = rootfs / "etc/machine-id"
    machine_id.write_text("")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    systemd = rootfs / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = systemd / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    for unit, wants in ENABLED_UNITS.items():
        link = systemd / wants / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if not (link.exists() or link.is_symlink()):
            link.symlink_to(f"/lib/systemd/system/{unit}")


def _set_root_password_unusable(rootfs: Path) -> None:
    """'*' (no password works) rather than '!' (locked): a locked account is
    refused even with a key on some sshd configurations."""
    shadow = rootfs / "etc/shadow"
    lines = shadow.read_text().splitlines()
    out = []
    for line in lines:
        fields = line.split(":")
        if fields[0] == "root":
            fields[1] = "*"
        out.append(":".join(fields))
    shadow.write_text("\n".join(out) + "\n")
