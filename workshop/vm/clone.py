"""Fresh VMs: each one restored from the snapshot (see snapshot.py) on its own disk.

A fresh VM is an ordinary VM of ``vms_dir()`` (so ``qemu:NAME`` reaches it)
marked ephemeral: its own qcow2 overlay on the snapshot's read-only disk, its
own state directory, FIFOs and QMP socket, its own SSH port (qemu's user
network forwards a host port chosen for this qemu; the restored guest's sshd
keeps listening on 22), and its own host key, clock and randomness, given by
the snapshot's agent before anything connects.  It is never booted again: when
it stops, it is gone.

Each records its owner (pid and start time of the process that made it).  A
fresh VM whose owner is gone (a grader killed with ``kill -9``) is stopped and
removed, overlay and all, by :func:`sweep_orphans`, which every new fresh VM
runs first.

When the snapshot is damaged or cannot be made, the fresh VM boots from
scratch instead, and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import VMError
from ..lock import FileLock
from ..settings import Settings
from ..text import Notice
from .agent import new_tokens, save_tokens, write_all
from .agent import parse_replies as agent_replies
from .image import Image, image_for, images_dir
from .machine import (
    VM,
    _pid_alive,
    _pid_is_qemu,
    _QemuRefused,
    _unpin_port,
    kvm_usable,
    list_vms,
    pin_host_key,
    process_owner,
    process_start_time,
    qemu_img_binary,
    vms_dir,
)
from .qmp import QMP, QMPError
from .snapshot import Snapshot, ensure_snapshot, make_setup_fifos, prepare_guest, setup_devices, snapshots_dir

Progress = Callable[[str], None]

# Restoring takes a fraction of a second; this is for a host whose other load
# keeps the clone from a CPU for a long while.
RESTORE_TIMEOUT = 60.0


_LOAD_FAILED = "qemu could not load it (the saved state is damaged or does not fit this machine)"


class SnapshotFailed(VMError):
    """The snapshot could not be restored: boot from scratch instead."""


@contextlib.contextmanager
def fresh_vm(base: str, progress: Progress | None = None) -> Iterator[VM]:
    """A new VM named ``BASE-xxxxxxxx``, ready for SSH, stopped and removed afterwards."""
    vm = start_fresh(base, progress)
    try:
        yield vm
    finally:
        if vm.dir.exists():
            vm.destroy()


def start_fresh(base: str, progress: Progress | None = None, settings: Settings | None = None) -> VM:
    """Start a fresh VM from the snapshot (saving it first if there is none);
    boots from scratch when the snapshot cannot be used.  The caller destroys it."""
    say = progress or (lambda text: None)
    sweep_orphans(say)
    vm = VM(f"{base}-{secrets.token_hex(4)}", settings=settings)
    vm.dir.mkdir(parents=True)
    vm._save_state({"name": vm.name, "ephemeral": True, "owner": process_owner()})
    try:
        _start(vm, say)
    except BaseException:
        vm.destroy()
        raise
    return vm


def _start(vm: VM, say: Progress) -> None:
    image = vm.ready_image(say)
    memory_mb, cpus = vm.settings.vm_memory, vm.settings.vm_cpus
    usable, why = kvm_usable(vm.settings)
    accel = "kvm" if usable else "tcg"
    if not usable:
        say(Notice(f"no KVM ({why}): fresh VMs run under TCG software emulation (slower)"))
    try:
        snap = ensure_snapshot(image, accel, memory_mb, cpus, say)
    except VMError as exc:
        say(f"no VM snapshot ({exc}); booting '{vm.name}' from scratch")
        return _cold(vm, image, say)
    problem = snap.problem()
    if problem is None:
        try:
            return restore(vm, snap, image, say)
        except SnapshotFailed as exc:
            problem = str(exc)
        vm._stop(lambda text: None)
    say(f"the VM snapshot {snap.dir} cannot be restored: {problem}. Booting '{vm.name}' from scratch "
        "instead; the snapshot is saved again next time")
    snap.discard()
    _cold(vm, image, say)


def _cold(vm: VM, image: Image, say: Progress) -> None:
    """Boot from scratch, as isolated as a restored clone, and start its agent
    before anything else connects: it is then sealed as a restored one is."""
    vm._save_state({key: value for key, value in vm.state().items() if key in ("name", "ephemeral", "owner")})
    vm.disk.unlink(missing_ok=True)
    for end in ("in", "out"):
        (vm.dir / f"setup.{end}").unlink(missing_ok=True)
    vm.prepare_disk(image, say)
    make_setup_fifos(vm.dir)
    vm.start_cold(image, say, devices=setup_devices(vm.dir), isolated=True)
    state = vm.state()
    prepare_guest(int(state["port"]), image)
    kind, b64, private = _new_host_key()
    _personalise(vm, int(state["pid"]), private, f"{kind} {b64} workshop-{vm.name}\n".encode())
    pin_host_key(int(state["port"]), kind, b64)


def restore(vm: VM, snap: Snapshot, image: Image, say: Progress, own_login: bool = False) -> None:
    """Start ``vm`` from ``snap`` on an overlay of its own, then give it its own
    host key, clock and randomness through the snapshot's agent; with
    ``own_login``, its own login key too (``vm.dir/id_ed25519``), which then
    is the only one its root accepts: the image's shared key no longer logs in."""
    started = time.monotonic()
    meta = snap.meta
    _overlay(vm, snap)
    make_setup_fifos(vm.dir)
    incoming = ["-incoming", f"exec:cat {shlex.quote(str(snap.memory))}"]
    try:
        port = vm.launch(
            lambda port: vm.command(image, meta["accel"], port, meta["memory_mb"], meta["cpus"],
                                    setup_devices(vm.dir), isolated=True) + incoming,
            f"restoring '{vm.name}' from the VM snapshot", say)
    except _QemuRefused as exc:
        raise SnapshotFailed(f"qemu refused it: {exc}") from None
    try:
        pid = vm.qemu_pid()
    except (OSError, ValueError):  # qemu loads the state before it writes its pid file
        raise SnapshotFailed(_LOAD_FAILED) from None
    login_key = vm.dir / "id_ed25519"
    state = vm.state() | {
        "pid": pid, "port": port, "accel": meta["accel"], "image": str(image.dir),
        "private_key": str(login_key if own_login else image.client_key), "memory_mb": meta["memory_mb"], "cpus": meta["cpus"],
        "snapshot": snap.dir.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "ready": False,
    }
    vm._save_state(state)
    _await_restored(vm, pid)
    restored = time.monotonic()
    kind, b64, private = _new_host_key()
    pin_host_key(port, kind, b64)
    login = None
    if own_login:
        login_kind, login_b64, login_private = _new_host_key()
        fd = os.open(login_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(login_private)
        login = f"{login_kind} {login_b64} workshop-{vm.name}\n".encode()
    _personalise(vm, pid, private, f"{kind} {b64} workshop-{vm.name}\n".encode(), login)
    state = vm.state() | {"ready": True, "restore_seconds": round(restored - started, 2),
                          "boot_seconds": round(time.monotonic() - started, 2)}  # the agent's fields kept
    vm._save_state(state)
    say(f"'{vm.name}' is up, restored from the snapshot in {state['boot_seconds']:.1f} s: "
        f"ssh root@127.0.0.1 -p {port}")


def _overlay(vm: VM, snap: Snapshot) -> None:
    done = subprocess.run(
        [qemu_img_binary() or "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(snap.disk),
         str(vm.disk)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SnapshotFailed(f"qemu-img could not put an overlay on its disk: {done.stderr.strip()}")


def _await_restored(vm: VM, pid: int) -> None:
    """Wait until qemu has loaded the saved state, then let the guest run."""
    deadline = time.monotonic() + RESTORE_TIMEOUT
    try:
        with QMP(vm.qmp_socket, timeout=RESTORE_TIMEOUT) as q:
            while time.monotonic() < deadline:
                migration = q.command("query-migrate")
                assert isinstance(migration, dict)
                status = migration.get("status")
                if status == "completed":
                    q.command("cont")  # the snapshot was saved paused
                    return
                if status == "failed":
                    raise SnapshotFailed(f"qemu could not load it: {migration.get('error-desc', 'failed')}")
                time.sleep(0.01)
    except QMPError as exc:
        if not _pid_alive(pid):
            # qemu exits when the saved state does not fit the machine or is damaged
            raise SnapshotFailed(_LOAD_FAILED) from None
        raise SnapshotFailed(f"qemu did not answer while loading it: {exc}") from None
    raise SnapshotFailed(f"qemu had not loaded it after {RESTORE_TIMEOUT:.0f} s")


def _new_host_key() -> tuple[str, str, bytes]:
    """A fresh ed25519 host key: (type, base64 public key, OpenSSH private key file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    kind, b64 = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                              serialization.PublicFormat.OpenSSH).decode().split()[:2]
    return kind, b64, private


def _personalise(vm: VM, pid: int, private: bytes, public: bytes, login: bytes | None = None) -> None:
    """Send the agent its request (the host's time last, so it is fresh) and wait for
    its answer; the tokens seal it (agent.py): from then on it runs this VM's checks.
    ``login``: the authorized_keys line root's logins then need."""
    tokens = new_tokens()
    save_tokens(vm.dir, tokens)
    fields = [("seed", os.urandom(64)), ("key", private), ("pub", public), ("tokens", tokens)]
    if login is not None:
        fields.append(("login", login))
    now = time.time_ns()
    fields.append(("time", f"{now // 10**9}.{now % 10**9:09d}".encode()))
    request = "".join(f"{name} {value.hex()}\n" for name, value in fields) + "end\n"
    try:
        out = os.open(vm.dir / "setup.out", os.O_RDONLY | os.O_NONBLOCK)
        try:
            fd = os.open(vm.dir / "setup.in", os.O_WRONLY | os.O_NONBLOCK)
            try:
                write_all(fd, request.encode())
            finally:
                os.close(fd)
            answer = _read_answer(out, pid)
        finally:
            os.close(out)
    except OSError as exc:  # qemu is gone (no reader behind the FIFO)
        raise SnapshotFailed(f"could not reach the restored guest's agent ({exc.strerror})") from None
    if answer.get("ok") != b"ok":
        said = (answer.get("error") or b"no answer").decode(errors="replace")
        raise SnapshotFailed(f"the restored guest's agent said: {said}")
    vm._save_state(vm.state() | {"sealed": True,
                                 "ptrace_scope": answer.get("ptrace_scope", b"").decode(errors="replace")})


def _read_answer(fd: int, pid: int) -> dict[str, bytes]:
    data = b""
    deadline = time.monotonic() + RESTORE_TIMEOUT
    while not agent_replies(data):
        if time.monotonic() > deadline:
            raise SnapshotFailed(f"the restored guest did not answer within {RESTORE_TIMEOUT:.0f} s")
        if not _pid_alive(pid):
            raise SnapshotFailed("qemu stopped right after restoring it")
        ready, _, _ = select.select([fd], [], [], 0.25)
        if ready:
            data += os.read(fd, 4096)
    return agent_replies(data)[0]


# ---- owners and orphans ------------------------------------------------------------
def _orphaned(state: dict) -> bool:
    owner = state.get("owner") or {}
    pid = owner.get("pid")
    return not (isinstance(pid, int) and _pid_alive(pid) and process_start_time(pid) == owner.get("start"))


def orphans() -> list[tuple[Path, dict]]:
    """The fresh VMs (and half-saved snapshots) whose owner is gone, with their state."""
    found = []
    dirs = sorted(vms_dir().iterdir()) if vms_dir().is_dir() else []
    saving = list(snapshots_dir().glob("*.saving")) if snapshots_dir().is_dir() else []
    for entry in [*dirs, *saving]:
        try:
            state = json.loads((entry / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("ephemeral") and _orphaned(state):
            found.append((entry, state))
    return found


def sweep_orphans(progress: Progress | None = None) -> list[str]:
    """Stop and remove the fresh VMs (and half-saved snapshots) whose owner is
    gone; returns their names."""
    say = progress or (lambda text: None)
    removed = []
    for entry, state in orphans():
        pid = state.get("pid")
        if isinstance(pid, int) and _pid_alive(pid) and _pid_is_qemu(pid, entry):
            with contextlib.suppress(ProcessLookupError):  # another sweep got there first
                os.kill(pid, 9)  # its disk is thrown away: nothing to flush
            deadline = time.monotonic() + 10  # a big guest takes a moment to die: gone means gone
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        if state.get("port"):
            _unpin_port(int(state["port"]))
        shutil.rmtree(entry, ignore_errors=True)
        say(f"removed '{entry.name}', left by a process that is gone")
        removed.append(entry.name)
    return removed



# ---- a user's own VM, restored (a course hub) --------------------------------------
VM_SLOTS = ".vm-slots.lock"  # in the image cache: made readable for all by `workshop hub vm`


def start_own(vm: VM, say: Progress) -> None:
    """Restore ``vm`` (``qemu:NAME`` with ``vm_restore`` set) from the snapshot in the image
    cache, which may be shared and read-only: on an overlay in this user's data dir, with a
    host key and a login key of its own, sealed from every network, owned by this process
    (the kernel: when it is gone the VM goes with it).  A VM of that name that stopped is
    replaced.  The instructor's limits are checked first; over one, a VMError says which."""
    with FileLock(vms_dir() / f".{vm.name}.lock", f"another process is starting the VM '{vm.name}'", say):
        if vm.running and vm.state().get("ready"):
            return
        sweep_orphans(say)
        if vm.dir.exists():
            say(f"the VM '{vm.name}' had stopped: restoring a new one")
            vm.destroy()
        image = vm.ready_image(say) if os.access(images_dir(), os.W_OK) else image_for()
        if not image.built:
            raise VMError(f"the VM image is not built in {images_dir()}, and this user cannot build it there: "
                          "the machine's administrator builds it (workshop hub vm, as root).")
        usable, _ = kvm_usable(vm.settings)
        snap = ensure_snapshot(image, "kvm" if usable else "tcg", vm.settings.vm_memory, vm.settings.vm_cpus, say)
        # one VM starts at a time on the machine when their number is limited: each counts the others'
        slots = FileLock(images_dir() / VM_SLOTS, "another user's VM is starting", say) \
            if vm.settings.vm_max_running else contextlib.nullcontext()
        with slots:
            _check_limits(vm)
            vm.dir.mkdir(mode=0o700, parents=True)
            vm._save_state({"name": vm.name, "ephemeral": True, "owner": process_owner()})
            try:
                restore(vm, snap, image, say, own_login=True)
            except BaseException:
                vm.destroy()
                raise


def _check_limits(vm: VM) -> None:
    mine = [other.name for other in list_vms() if other.name != vm.name and other.running]
    most = vm.settings.vm_max_per_user
    if most and len(mine) >= most:
        raise VMError(f"you already run {len(mine)} VM(s) ({', '.join(mine)}), the most this machine allows "
                      f"you: stop one (workshop vm destroy NAME) before you start '{vm.name}'.")
    most = vm.settings.vm_max_running
    running = running_vms()
    if most and running >= most:
        raise VMError(f"this machine already runs {running} VMs, the most its administrator allows at once: "
                      "run the cell again in a few minutes, when someone else's VM has stopped.")


def running_vms() -> int:
    """The tool's qemu processes on this machine, every user's (their command lines are
    readable unless /proc is mounted with hidepid)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(b"workshop-") for arg in argv[1:3]) and b"qemu" in argv[0]:
            count += 1
    return count
