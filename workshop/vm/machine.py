"""Boot, find and stop micro VMs under qemu.

Each VM has a directory ``data_dir()/vms/NAME`` with its disk (a qcow2 overlay on
the cached image, so the image stays pristine and each VM keeps its own
changes), its state (``state.json``: pid, port, accelerator), its serial console
log and qemu's QMP socket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import TargetError, VMError
from ..lock import FileLock
from ..paths import data_dir, known_hosts_file
from ..settings import Settings
from ..shell import known_hosts
from ..shell.ssh import Endpoint, SSHConnection, host_pattern
from ..text import Notice
from .image import Image, ImageError, build_image
from .qmp import QMP, QMPError

Progress = Callable[[str], None]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
USER = "root"
HOST = "127.0.0.1"
# A KVM guest prints to its console within a second or two; if it is silent
# this long, KVM is not working here (nested KVM can hang or stop the guest).
KVM_BOOT_TIMEOUT = 20.0
TCG_BOOT_TIMEOUT = 300.0
# After a KVM guest fails, VMs boot under TCG for this long, then KVM is tried again:
# one boot that was slow under load must not keep a machine off KVM for good.
KVM_RETRY_AFTER = 24 * 3600.0
# These are the guest's own time: what qemu's threads spent waiting for a CPU
# that other programs had is not counted, so a loaded host makes the wait
# longer on the clock instead of failing a boot that is only slow. The clock
# never runs past this many times the timeout, though.
BOOT_MAX_STRETCH = 4.0
# What a guest kernel prints when it stalls: under TCG on a loaded host a booting guest
# has lost a timer interrupt to the emulation ("rcu_preempt kthread timer wakeup didn't
# happen ... Possible timer handling issue on cpu=0") and then waited for ever, its boot
# failing only at the timeout, minutes later.  Such a boot is given up at the first sign
# and the VM booted again, once; the second boot waits out its timeout as before.
STALL_SIGNS = ("rcu: INFO: rcu_preempt detected stalls", "rcu_preempt kthread starved",
               "blocked for more than 120 seconds")
KERNEL_ARGS = (
    "root=/dev/vda rw rootfstype=ext4 console=ttyS0 quiet loglevel=4 panic=-1 "
    "mitigations=off net.ifnames=0 random.trust_cpu=on 8250.nr_uarts=1 "
    # the crypto self-tests take seconds under emulation
    "cryptomgr.notests no_timer_check"
)
INIT_ARGS = {
    # busybox init: mounts, cgroup v2, network, sshd (the fast default)
    "busybox": "init=/usr/lib/workshop/init",
    # the full systemd (cgroup v2 as well)
    "systemd": "systemd.unified_cgroup_hierarchy=1 systemd.show_status=false",
}


def init_system(settings: Settings | None = None) -> str:
    return (settings or Settings()).vm_init


def vms_dir() -> Path:
    path = data_dir() / "vms"
    path.mkdir(parents=True, exist_ok=True)
    return path


def vm_dir(name: str) -> Path:
    check_name(name)
    return vms_dir() / name


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or name == "images":
        raise VMError(
            f"'{name}' is not a VM name: use letters, digits, '.', '_' and '-' (e.g. qemu:workshop)"
        )


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


def qemu_img_binary() -> str | None:
    return shutil.which("qemu-img")


def kvm_usable(settings: Settings | None = None) -> tuple[bool, str]:
    """Whether VMs boot with KVM, and why not: /dev/kvm cannot be opened, or a KVM guest failed
    here recently (WORKSHOP_VM_ACCEL=kvm tries it anyway)."""
    accel = (settings or Settings()).vm_accel
    if accel == "tcg":
        return False, "WORKSHOP_VM_ACCEL=tcg"
    works, why = kvm_device()
    if not works:
        return False, why
    recent = kvm_failed_recently()
    if recent and accel != "kvm":
        return False, recent
    return True, why


def kvm_device() -> tuple[bool, str]:
    """Whether /dev/kvm can be opened, and why not."""
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"/dev/kvm cannot be opened ({exc.strerror})"
    os.close(fd)
    return True, "/dev/kvm works"


def kvm_failed_recently() -> str | None:
    """Why VMs skip KVM for now: a KVM guest failed here less than KVM_RETRY_AFTER ago (when, how,
    until when, and how to try at once).  None when none did, or long enough ago: that failure is
    forgotten (its marker removed) and KVM is tried again."""
    marker = _kvm_broken_file()
    try:
        since = max(0.0, time.time() - marker.stat().st_mtime)
        reason = " ".join(marker.read_text(errors="replace").split())
    except OSError:
        return None
    if since >= KVM_RETRY_AFTER:
        marker.unlink(missing_ok=True)
        return None
    reason = reason if len(reason) < 90 else reason[:40] + "…" + reason[-45:]
    retry = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() - since + KVM_RETRY_AFTER))
    return (f"a KVM guest failed here {_ago(since)}: {reason}; KVM is tried again after {retry}, "
            f"or at once if you remove {marker}")


def _ago(seconds: float) -> str:
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def _kvm_broken_file() -> Path:
    return vms_dir() / "kvm-broken"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_owner() -> dict:
    """This process, as a VM's owner: its pid and start time (a reused pid is another process)."""
    return {"pid": os.getpid(), "start": process_start_time(os.getpid())}


def _pid_is_qemu(pid: int, vmdir: Path) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return any(b"qemu-system" in a for a in args[:1]) and str(vmdir).encode() in b" ".join(args)


def _ssh_banner(port: int, timeout: float = 2.0) -> bool:
    """True once sshd in the guest answers (qemu's forwarder accepts before that)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def qemu_command(qemu: str, image: Image, accel: str, memory_mb: int, cpus: int, *, name: str, disk: Path,
                 port: int, files: Path, devices: tuple[str, ...] = (), isolated: bool = False,
                 init: str | None = None) -> list[str]:
    """qemu's command line for a VM; its console log, QMP socket and pid file go into ``files``.
    A snapshot is keyed by this very line (with placeholders for the paths and the port).
    An ``isolated`` VM (a rerun's) reaches nothing: qemu's user network forwards SSH in and
    lets no packet out, to the host or beyond."""
    cpu = "host" if accel == "kvm" else "max"
    restrict = ",restrict=on" if isolated else ""
    return [
        qemu,
        "-name", f"workshop-{name}",
        "-machine", f"q35,accel={accel}",
        "-cpu", cpu,
        "-smp", str(cpus),
        "-m", str(memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
        "-no-reboot",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", f"{KERNEL_ARGS} {INIT_ARGS[init or init_system()]}",
        "-drive", f"file={disk},if=virtio,format=qcow2,discard=unmap",
        "-netdev", f"user,id=net0{restrict},hostfwd=tcp:{HOST}:{port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        *devices,
        "-serial", f"file:{files / 'console.log'}",
        "-qmp", f"unix:{files / 'qmp.sock'},server=on,wait=off",
        "-pidfile", str(files / "qemu.pid"),
        "-daemonize",
    ]


@dataclass
class SSHInfo:
    user: str
    hostname: str
    port: int
    private_key: str

    def as_json(self) -> dict:
        # the fields bakerx's `ssh-info --format json` gives
        return {
            "user": self.user,
            "host": self.hostname,
            "hostname": self.hostname,
            "port": self.port,
            "private_key": self.private_key,
            "known_hosts": str(known_hosts_file()),
        }

    def command(self) -> str:
        import shlex

        return (
            f"ssh -i {shlex.quote(self.private_key)} -p {self.port} "
            f"-o UserKnownHostsFile={shlex.quote(str(known_hosts_file()))} -o StrictHostKeyChecking=yes "
            f"-o IdentitiesOnly=yes {self.user}@{self.hostname}"
        )


class VM:
    def __init__(self, name: str, directory: Path | None = None, settings: Settings | None = None) -> None:
        check_name(name)
        self.name = name
        # the settings of whoever asked for this VM (the kernel's, the command's)
        self.settings = settings or Settings()
        # a VM of `workshop vm`, or the machine a snapshot is saved from (its own directory)
        self.dir = directory or vm_dir(name)

    # ---- files --------------------------------------------------------
    @property
    def disk(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def exists(self) -> bool:
        return self.disk.exists()

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    # ---- status -------------------------------------------------------
    def pid(self) -> int | None:
        pid = self.state().get("pid")
        if pid and _pid_alive(pid) and _pid_is_qemu(pid, self.dir):
            return int(pid)
        return None

    @property
    def running(self) -> bool:
        return self.pid() is not None

    def runstate(self) -> str:
        try:
            with QMP(self.qmp_socket, timeout=3) as q:
                return q.status()
        except (QMPError, OSError, ValueError):
            return "unknown"

    def ssh_info(self) -> SSHInfo:
        state = self.state()
        if not self.running or not state.get("port"):
            raise VMError(f"the VM '{self.name}' is not running; start it with `workshop vm up {self.name}`")
        return SSHInfo(USER, HOST, int(state["port"]), state["private_key"])

    # ---- up -----------------------------------------------------------
    def up(self, progress: Progress | None = None, memory_mb: int | None = None, cpus: int | None = None) -> SSHInfo:
        """Start the VM (building the image first if needed); instant if it runs."""
        say = progress or (lambda text: None)
        if self.running and self.state().get("ready"):
            return self.ssh_info()
        if self.settings.vm_restore:
            from .clone import start_own

            start_own(self, say)
            return self.ssh_info()
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.dir / ".lock", f"another process is starting the VM '{self.name}'", say):
            if self.running and self.state().get("ready"):
                return self.ssh_info()
            if self.running:  # started but never became ready: start over
                self._stop(say)
            if self.state().get("ephemeral"):
                raise VMError(f"the fresh VM '{self.name}' is no longer running; it is not started again")
            image = self.ready_image(say)
            self.prepare_disk(image, say)
            return self.start_cold(image, say, memory_mb, cpus, isolated=self.settings.vm_network == "none")

    def ready_image(self, say: Progress) -> Image:
        if qemu_binary() is None:
            raise VMError("qemu is not installed: apt-get install qemu-system-x86 qemu-utils")
        try:
            return build_image(say)[0]
        except ImageError as exc:
            raise VMError(str(exc)) from None

    def start_cold(self, image: Image, say: Progress, memory_mb: int | None = None, cpus: int | None = None,
                   devices: tuple[str, ...] = (), isolated: bool = False) -> SSHInfo:
        """Boot the image from scratch on this VM's disk: KVM when it works, else TCG."""
        qemu = qemu_binary() or "qemu-system-x86_64"
        memory_mb = memory_mb or self.settings.vm_memory
        cpus = cpus or self.settings.vm_cpus
        use_kvm, why = kvm_usable(self.settings)
        kvm_failure = None
        if use_kvm:
            try:
                return self._boot(qemu, image, "kvm", memory_mb, cpus, say, devices, isolated)
            except _KVMFailed as exc:
                kvm_failure = str(exc)
                say(Notice(f"KVM failed ({exc}); falling back to TCG software emulation (slower). VMs here use "
                           f"TCG for the next {KVM_RETRY_AFTER / 3600:g} h, then try KVM again; remove "
                           f"{_kvm_broken_file()} to try it sooner"))
        else:
            say(Notice(f"no KVM ({why}): booting with TCG software emulation (slower)"))
        try:
            info = self._boot(qemu, image, "tcg", memory_mb, cpus, say, devices, isolated, stalls_end_it=True)
        except _GuestStalled as exc:
            say(Notice(f"the guest's kernel stalled while booting under emulation ({exc}); booting it again"))
            info = self._boot(qemu, image, "tcg", memory_mb, cpus, say, devices, isolated)
        if kvm_failure:
            # the same VM boots without KVM: remember for a while that KVM is what fails here
            _kvm_broken_file().write_text(f"{kvm_failure}\n")  # when: its modification time
        return info

    def prepare_disk(self, image: Image, say: Progress) -> None:
        backing = self.dir / "image"
        if self.disk.exists() and backing.exists() and backing.read_text().strip() == str(image.dir):
            return
        if self.disk.exists():
            say(f"the VM image changed: starting '{self.name}' from a fresh disk")
            self.disk.unlink()
        qemu_img = qemu_img_binary()
        if qemu_img is None:
            raise VMError("qemu-img is not installed: apt-get install qemu-utils")
        done = subprocess.run(
            [qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(self.disk)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise VMError(f"qemu-img could not create {self.disk}: {done.stderr.strip()}")
        backing.write_text(str(image.dir) + "\n")

    def command(self, image: Image, accel: str, port: int, memory_mb: int, cpus: int,
                devices: tuple[str, ...] = (), isolated: bool = False) -> list[str]:
        return qemu_command(qemu_binary() or "qemu-system-x86_64", image, accel, memory_mb, cpus,
                            name=self.name, disk=self.disk, port=port, files=self.dir, devices=devices,
                            isolated=isolated, init=self.settings.vm_init)

    def launch(self, command_for_port: Callable[[int], list[str]], what: str, say: Progress) -> int:
        """Start qemu (it daemonizes) with SSH forwarded to a free loopback port;
        returns the port. Raises _QemuRefused with qemu's own words."""
        for _ in range(5):
            port = free_port()
            self.qmp_socket.unlink(missing_ok=True)
            (self.dir / "qemu.pid").unlink(missing_ok=True)
            say(f"{what} with SSH on {HOST}:{port}")
            done = subprocess.run(command_for_port(port), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, cwd=self.dir)
            if done.returncode == 0:
                return port
            err = done.stderr.strip()
            if "hostfwd" in err or "host forwarding" in err:
                continue  # the port was taken meanwhile: another one
            raise _QemuRefused(err or f"qemu exit {done.returncode}")
        raise VMError("qemu could not forward SSH to a free loopback port after 5 tries")

    def qemu_pid(self) -> int:
        return int((self.dir / "qemu.pid").read_text().strip())

    def _boot(self, qemu: str, image: Image, accel: str, memory_mb: int, cpus: int, say: Progress,
              devices: tuple[str, ...] = (), isolated: bool = False, stalls_end_it: bool = False) -> SSHInfo:
        started = time.monotonic()
        try:
            port = self.launch(lambda port: self.command(image, accel, port, memory_mb, cpus, devices, isolated),
                               f"booting '{self.name}' ({accel.upper()}, {cpus} CPU, {memory_mb} MB)", say)
        except _QemuRefused as exc:
            if accel == "kvm":
                raise _KVMFailed(str(exc).splitlines()[-1].replace(qemu + ": ", "")) from None
            raise VMError(f"qemu could not start the VM: {exc}") from None
        pid = self.qemu_pid()
        state = self.state() | {
            "name": self.name,
            "pid": pid,
            "port": port,
            "accel": accel,
            "image": str(image.dir),
            "private_key": str(image.client_key),
            "memory_mb": memory_mb,
            "cpus": cpus,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "ready": False,
        }
        self._save_state(state)
        pin_host_key(port, *image.host_key_line())
        try:
            held_back = self._await_ssh(pid, port, accel, started, say, stalls_end_it)
            self._verify_login(port, image)
        except BaseException:  # a failed boot, a VM we cannot log in to, or an interrupt: stop it
            self._stop(lambda text: None)
            raise
        if accel == "kvm" and self.runstate() == "internal-error":
            self._stop(lambda text: None)
            raise _KVMFailed("KVM internal error after boot")
        state["ready"] = True
        state["boot_seconds"] = round(time.monotonic() - started, 1)
        state["boot_cpu_wait_seconds"] = round(held_back, 1)
        self._save_state(state)
        say(f"'{self.name}' is up ({accel.upper()}) in {state['boot_seconds']:.1f} s: ssh {USER}@{HOST} -p {port}")
        return SSHInfo(USER, HOST, port, str(image.client_key))

    def _await_ssh(self, pid: int, port: int, accel: str, started: float, say: Progress,
                   stalls_end_it: bool = False) -> float:
        """Wait until the booting guest answers on SSH; returns how long the
        host's other load kept the guest from a CPU meanwhile (seconds).  With
        ``stalls_end_it``, a stall the guest's kernel reports raises _GuestStalled."""
        timeout = KVM_BOOT_TIMEOUT if accel == "kvm" else (self.settings.vm_boot_timeout or TCG_BOOT_TIMEOUT)
        begun = time.monotonic()
        cpu_wait_before = _cpu_wait_seconds(pid)
        held_back = 0.0
        last_note = 0.0
        while True:
            # on any failure here, _boot stops the VM
            if not _pid_alive(pid):
                reason = self._console_tail()
                if accel == "kvm":
                    raise _KVMFailed("the guest stopped while booting")
                raise VMError(f"the VM '{self.name}' stopped while booting; its console:\n{reason}")
            runstate = self.runstate()
            if runstate in ("internal-error", "guest-panicked", "shutdown"):
                if accel == "kvm":
                    raise _KVMFailed(f"KVM internal error (qemu state {runstate})" if runstate == "internal-error" else runstate)
                raise VMError(f"the VM '{self.name}' failed while booting ({runstate}); its console:\n{self._console_tail()}")
            if _ssh_banner(port):
                return held_back
            if stalls_end_it and (stall := self._stall_reported()):
                raise _GuestStalled(stall)
            now = time.monotonic()
            cpu_wait = _cpu_wait_seconds(pid)
            if cpu_wait is not None and cpu_wait_before is not None:
                held_back = max(0.0, cpu_wait - cpu_wait_before)
            waited = now - begun
            if waited - held_back > timeout or waited > timeout * BOOT_MAX_STRETCH:
                spent = f"{timeout:.0f} s" if held_back < 1 else (
                    f"{timeout:.0f} s of its own time ({waited:.0f} s on the clock, {held_back:.0f} s of them "
                    f"waiting for a CPU the host's other load had; load average {_load_average()})"
                )
                if accel == "kvm":
                    raise _KVMFailed(f"no SSH within {spent}")
                raise VMError(
                    f"the VM '{self.name}' did not answer on SSH within {spent}; "
                    f"its console log is {self.console_log}:\n{self._console_tail()}"
                )
            if now - last_note >= 5:
                busy = f", {held_back:.0f} s of them waiting for a CPU" if held_back >= 1 else ""
                say(f"waiting for SSH in '{self.name}' ({now - started:.0f} s{busy})")
                last_note = now
            time.sleep(0.25)

    def _verify_login(self, port: int, image: Image) -> None:
        """Log in once with the pinned host key (strict) and the client key."""
        conn = SSHConnection(Endpoint(HOST, port, USER, str(image.client_key)), connect_timeout=20, pin="strict")
        last: Exception | None = None
        try:
            for _ in range(20):
                try:
                    if conn.exec("true").ok:
                        return
                except TargetError as exc:
                    if "host key" in str(exc):
                        raise VMError(f"the VM offered an unexpected host key on port {port}: {exc}") from None
                    last = exc
                time.sleep(0.5)
        finally:
            conn.close()
        raise VMError(f"could not log in to the VM '{self.name}' on port {port}: {last}")

    def _console_text(self) -> str | None:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return None

    def _stall_reported(self) -> str | None:
        """The console's first line that says the guest's kernel stalled, if any."""
        lines = (self._console_text() or "").splitlines()
        return next((line.strip() for line in lines if any(sign in line for sign in STALL_SIGNS)), None)

    def _console_tail(self, lines: int = 20) -> str:
        text = self._console_text()
        if text is None:
            return "(no console log)"
        return "\n".join(text.strip().splitlines()[-lines:])

    # ---- down / destroy -----------------------------------------------
    def down(self, progress: Progress | None = None) -> bool:
        """Stop the VM; False if it was not running."""
        say = progress or (lambda text: None)
        if not self.dir.exists():
            raise VMError(f"there is no VM '{self.name}'; `workshop vm list` shows the VMs")
        with FileLock(self.dir / ".lock", f"another process is starting the VM '{self.name}'", say):
            return self._stop(say)

    def _stop(self, say: Progress) -> bool:
        state = self.state()
        pid = self.pid()
        port = state.get("port")
        if pid is None:
            self._forget(port)
            return False
        say(f"stopping '{self.name}'")
        if state.get("ready") and port and not state.get("ephemeral"):
            self._sync_guest(int(port), state.get("private_key"))
        try:
            with QMP(self.qmp_socket, timeout=3) as q:
                q.command("quit")
        except (QMPError, OSError, ValueError):
            pass
        if not _wait_gone(pid, 10):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if _wait_gone(pid, 5):
                    break
        self._forget(port)
        return True

    def _sync_guest(self, port: int, key: str | None) -> None:
        """Flush the guest's file systems so that stopping qemu loses nothing."""
        conn = SSHConnection(Endpoint(HOST, port, USER, key), connect_timeout=5, pin="strict")
        try:
            conn.exec("sync", timeout=10)
        except TargetError:
            pass  # a guest that cannot be reached has nothing to flush that we could reach
        finally:
            conn.close()

    def _forget(self, port) -> None:
        state = self.state()
        if state:
            state.pop("pid", None)
            state["ready"] = False
            state.pop("port", None)
            self._save_state(state)
        if port:
            _unpin_port(int(port))
        self.qmp_socket.unlink(missing_ok=True)

    def destroy(self, progress: Progress | None = None) -> None:
        if not self.dir.exists():
            raise VMError(f"there is no VM '{self.name}'; `workshop vm list` shows the VMs")
        self.down(progress)
        shutil.rmtree(self.dir)


class _KVMFailed(Exception):
    pass


class _GuestStalled(Exception):
    """The booting guest's kernel reported a stall on its console (see STALL_SIGNS)."""


class _QemuRefused(Exception):
    """qemu exited at once (a bad option, a snapshot it cannot load)."""


def _cpu_wait_seconds(pid: int) -> float | None:
    """How long a thread of process ``pid`` has been runnable but waiting for a
    CPU (the kernel's schedstat run-queue delay), for the thread that waited
    longest: the guest's vCPUs wait side by side, so their delays overlap.
    None where the kernel does not tell."""
    longest = None
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                waited = int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
        longest = waited if longest is None else max(longest, waited)
    return longest


def _load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return not _pid_alive(pid)


def pin_host_key(port: int, kind: str, b64: str) -> None:
    """Pin the guest's host key (one the tool made) for its port in the tool's known_hosts."""
    import base64

    import paramiko

    known_hosts.pin(host_pattern(HOST, port), paramiko.PKey.from_type_string(kind, base64.b64decode(b64)),
                    replace=True)


def _unpin_port(port: int) -> None:
    known_hosts.unpin(host_pattern(HOST, port))


def list_vms() -> list[VM]:
    out = []
    for entry in sorted(vms_dir().iterdir()):
        if entry.is_dir() and NAME_RE.match(entry.name) and entry.name != "images" and (entry / "disk.qcow2").exists():
            out.append(VM(entry.name))
    return out

