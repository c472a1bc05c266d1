"""A running micro VM, saved once, restored for every fresh VM.

A snapshot is one machine booted from scratch, its guest warmed up, then paused
and saved with qemu's migration to a file (qemu 7.2 has no ``file:`` URI:
``exec:cat > FILE`` out, ``-incoming exec:cat FILE`` back in).  It lives next
to the image cache, in ``images_dir()/snapshots/IMAGE-KEY/``:

- ``memory``: the machine's RAM and device state;
- ``disk.qcow2``: its disk at that instant, over the image's ``disk.raw``;
- ``snapshot.json``: what it was made from, and the two files' sizes.

KEY digests the image, qemu's version and the whole qemu command line (machine,
accelerator, memory, CPUs, devices, kernel arguments), so a snapshot is never
restored into a machine it does not fit.  Both files are read-only: every
fresh VM gets its own qcow2 overlay on ``disk.qcow2`` and reads ``memory``.

A restored guest is a copy of the same instant: same clock, same kernel random
state, same SSH host key.  So before the snapshot is taken, a small agent
(:data:`AGENT`, perl from the image's perl-base) waits in the guest on a
virtio-serial port; each clone's qemu gets a fresh pipe behind that port, and
the tool sends the agent the host's time, 64 bytes of the host's randomness and
a host key made for that clone.  The agent mixes the bytes into the kernel's
pool and forces the CRNG to reseed at once (``RNDRESEEDCRNG``: the cloud kernel
has no vmgenid driver, and a plain write to /dev/urandom would only be used at
the next reseed, up to a minute later), sets the clock (``clock_settime``),
installs the host key (sshd reads it again for every connection), writes a new
machine-id and answers; then it stays, sealed, to run the clone's checks from
outside the student's reach (agent.py).  The guest also has virtio-rng's driver loaded,
so its kernel keeps taking fresh randomness from its own qemu afterwards.  All of this happens before any SSH connection
to the clone, whose key is the only one pinned for its port.

Fresh VMs are what reruns use, so the snapshot's machine has no way out: qemu's
user network is ``restrict=on`` (SSH forwarded in, nothing out: not the
internet, not the grader's own loopback through 10.0.2.2).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import TargetError, VMError
from ..lock import FileLock
from ..shell.ssh import Endpoint, SSHConnection
from .agent import AGENT, PORT_NAME
from .image import Image, _digest, images_dir
from .machine import HOST, USER, VM, process_owner, qemu_binary, qemu_command
from .qmp import QMP, QMPError

Progress = Callable[[str], None]

# Bump when what a snapshot holds changes (the agent, the warm-up).
SNAPSHOT_VERSION = "2"
# qemu's migration stream starts with "QEVM" and format version 3
STREAM_MAGIC = b"QEVM\x00\x00\x00\x03"
SAVE_TIMEOUT = 120.0


# Run once in the snapshot's guest before it is saved: the setup port's driver,
# the virtio-rng driver (the kernel then keeps mixing in the host's randomness,
# in every clone from its own qemu), the agent waiting on the port, and the programs a first cell runs read into the
# page cache (each clone's qemu starts with an empty translation cache anyway).
PREPARE = """modprobe virtio_console && cat > /run/workshop-agent && bash -c true || exit 1
modprobe virtio_rng 2>/dev/null
setsid perl /run/workshop-agent </dev/null >/dev/console 2>&1 &
i=0
while [ ! -e /run/workshop-agent.ready ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
rm -f /run/workshop-agent.ready /run/workshop-agent
[ $i -lt 1200 ] || { echo "the agent did not start; see the console log" >&2; exit 1; }
"""


def snapshots_dir() -> Path:
    path = images_dir() / "snapshots"
    with contextlib.suppress(OSError):  # a shared cache made read-only for its users: they only restore
        path.mkdir(parents=True, exist_ok=True)
    return path


def setup_devices(files: Path) -> tuple[str, ...]:
    """The virtio-serial port the agent waits on, behind the FIFOs ``files/setup.in``/``.out``."""
    return (
        "-device", "virtio-serial-pci,id=workshop-serial",
        "-chardev", f"pipe,id=setup,path={files / 'setup'}",
        "-device", f"virtserialport,bus=workshop-serial.0,chardev=setup,name={PORT_NAME}",
    )


def make_setup_fifos(files: Path) -> None:
    for end in ("in", "out"):
        os.mkfifo(files / f"setup.{end}", 0o600)


@functools.lru_cache(maxsize=4)
def _qemu_version(binary: str, _stamp: tuple[int, int]) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.stdout else f"unknown ({done.returncode})"


def qemu_version() -> str:
    """The first line of ``qemu-system-x86_64 --version``, asked again when the binary changes."""
    binary = qemu_binary() or "qemu-system-x86_64"
    try:
        stat = os.stat(binary)
    except OSError:
        return "not installed"
    return _qemu_version(binary, (stat.st_mtime_ns, stat.st_size))


def snapshot_key(image: Image, accel: str, memory_mb: int, cpus: int) -> str:
    """What a snapshot fits: the image, qemu's version, the machine's whole command line."""
    where = Path("/snapshot")
    line = qemu_command("qemu", image, accel, memory_mb, cpus, name="snapshot", disk=where / "disk.qcow2",
                        port=0, files=where, devices=setup_devices(where), isolated=True)
    return _digest(SNAPSHOT_VERSION, image.dir.name, qemu_version(), *line, AGENT, PREPARE)


@dataclass
class Snapshot:
    dir: Path

    @property
    def memory(self) -> Path:
        return self.dir / "memory"

    @property
    def disk(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def meta(self) -> dict:
        try:
            return json.loads((self.dir / "snapshot.json").read_text())
        except (OSError, ValueError):
            return {}

    def problem(self) -> str | None:
        """Why this snapshot cannot be restored (None: it can)."""
        meta = self.meta
        if not meta:
            return "it has not been saved" if not self.dir.exists() else "its snapshot.json is missing or unreadable"
        for path, field in ((self.memory, "memory_bytes"), (self.disk, "disk_bytes")):
            try:
                size = path.stat().st_size
            except OSError:
                return f"{path.name} is missing"
            if size != meta.get(field):
                return f"{path.name} has {size} bytes, not the {meta.get(field)} it was saved with"
        try:
            with open(self.memory, "rb") as f:
                if f.read(len(STREAM_MAGIC)) != STREAM_MAGIC:
                    return f"{self.memory.name} is not a qemu machine state"
        except OSError as exc:
            return f"{self.memory.name} cannot be read ({exc.strerror})"
        return None

    def discard(self) -> None:
        """Remove a snapshot that failed (clones running from it keep their open files)."""
        if self.dir.exists():
            graveyard = self.dir.with_name(f".discarded-{secrets.token_hex(4)}")
            try:
                self.dir.rename(graveyard)
            except OSError:
                return
            shutil.rmtree(graveyard, ignore_errors=True)


def snapshot_for(image: Image, accel: str, memory_mb: int, cpus: int) -> Snapshot:
    return Snapshot(snapshots_dir() / f"{image.dir.name}-{snapshot_key(image, accel, memory_mb, cpus)}")


def ensure_snapshot(image: Image, accel: str, memory_mb: int, cpus: int, say: Progress) -> Snapshot:
    """The snapshot for this machine, saved first (once, under a lock) when there is none."""
    snap = snapshot_for(image, accel, memory_mb, cpus)
    if snap.problem() is None:
        return snap
    if not os.access(snapshots_dir(), os.W_OK):
        raise VMError(f"there is no VM snapshot of {memory_mb} MB in {snapshots_dir()}, and this user cannot save "
                      "one there: the machine's administrator saves it (workshop hub vm, as root).")
    with FileLock(snapshots_dir() / f".{snap.dir.name}.lock", "another process is saving the VM snapshot", say):
        if snap.problem() is None:
            return snap
        snap = _save(snap, image, memory_mb, cpus, say)
        _prune(snap)
    return snap


def _save(snap: Snapshot, image: Image, memory_mb: int, cpus: int, say: Progress) -> Snapshot:
    """Boot, prepare and save the machine; returns the snapshot (of another
    key when KVM failed and the machine fell back to TCG)."""
    staging = snap.dir.with_name(snap.dir.name + ".saving")
    _remove_staging(staging)  # left by a process that was killed while saving
    staging.mkdir()
    machine = VM("snapshot", directory=staging)
    # stopped without a sync; removed by the next fresh VM if this process is killed
    (staging / "state.json").write_text(json.dumps({"ephemeral": True, "owner": process_owner()}))
    started = time.monotonic()
    try:
        machine.prepare_disk(image, say)
        make_setup_fifos(staging)
        say("saving a snapshot of the VM: booting it once")
        machine.start_cold(image, say, memory_mb, cpus, devices=setup_devices(staging), isolated=True)
        accel = machine.state()["accel"]
        if snapshot_for(image, accel, memory_mb, cpus).problem() is None:  # KVM failed; TCG's is there
            machine.down()
            shutil.rmtree(staging, ignore_errors=True)
            return snapshot_for(image, accel, memory_mb, cpus)
        booted = time.monotonic()
        prepare_guest(int(machine.state()["port"]), image)
        _save_machine(machine, staging / "memory")
        machine.down()
    except BaseException:
        _remove_staging(staging)
        raise
    meta = {
        "image": image.dir.name, "qemu": qemu_version(), "accel": accel, "memory_mb": memory_mb, "cpus": cpus,
        "memory_bytes": (staging / "memory").stat().st_size, "disk_bytes": (staging / "disk.qcow2").stat().st_size,
        "boot_seconds": round(booted - started, 1), "save_seconds": round(time.monotonic() - booted, 1),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    for name in ("memory", "disk.qcow2"):
        os.chmod(staging / name, 0o444)
    for name in ("setup.in", "setup.out", "state.json", "image", ".lock"):
        (staging / name).unlink(missing_ok=True)
    (staging / "snapshot.json").write_text(json.dumps(meta, indent=2))
    snap = snapshot_for(image, accel, memory_mb, cpus)
    snap.discard()  # a damaged one in the way
    staging.rename(snap.dir)
    say(f"VM snapshot saved ({meta['memory_bytes'] >> 20} MB of machine state): {snap.dir}")
    return snap


def prepare_guest(port: int, image: Image) -> None:
    """Start the agent in a freshly booted guest (before anything of a student's runs there)."""
    conn = SSHConnection(Endpoint(HOST, port, USER, str(image.client_key)), connect_timeout=20, pin="strict")
    try:
        done = conn.exec(PREPARE, stdin=AGENT.encode(), timeout=60)
    except TargetError as exc:
        raise VMError(f"could not prepare the snapshot's guest: {exc}") from None
    finally:
        conn.close()
    if not done.ok:
        raise VMError(f"could not prepare the snapshot's guest (exit {done.status}): {done.stderr.strip()}")
    # let the guest and qemu's user network finish closing that connection
    time.sleep(0.5)


def _save_machine(machine: VM, memory: Path) -> None:
    """Pause the machine and write its state into ``memory``."""
    try:
        with QMP(machine.qmp_socket, timeout=10) as q:
            q.command("stop")
            q.command("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
            q.command("migrate", uri=f"exec:cat > {shlex.quote(str(memory))}")
            deadline = time.monotonic() + SAVE_TIMEOUT
            while time.monotonic() < deadline:
                state = q.command("query-migrate")
                assert isinstance(state, dict)
                if state.get("status") == "completed":
                    return
                if state.get("status") in ("failed", "cancelled"):
                    raise VMError(f"qemu could not save the VM: {state.get('error-desc', state.get('status'))}")
                time.sleep(0.05)
    except QMPError as exc:
        raise VMError(f"qemu could not save the VM: {exc}") from None
    raise VMError(f"qemu did not finish saving the VM within {SAVE_TIMEOUT:.0f} s")


def _remove_staging(staging: Path) -> None:
    if not staging.exists():
        return
    machine = VM("snapshot", directory=staging)
    if machine.running:
        machine.down()
    shutil.rmtree(staging, ignore_errors=True)


def _prune(keep: Snapshot) -> None:
    """Remove the snapshots that can no longer be restored: those of images
    that are gone, and those of ``keep``'s machine that another qemu, agent or
    command line made (a snapshot of another size stays)."""
    same = {field: keep.meta.get(field) for field in ("image", "accel", "memory_mb", "cpus")}
    for entry in snapshots_dir().iterdir():
        meta = Snapshot(entry).meta if entry.is_dir() and entry != keep.dir else {}
        if not meta.get("image"):
            continue
        stale = all(meta.get(field) == value for field, value in same.items())
        if stale or not (images_dir() / meta["image"]).exists():
            shutil.rmtree(entry, ignore_errors=True)
            (entry.parent / f".{entry.name}.lock").unlink(missing_ok=True)
