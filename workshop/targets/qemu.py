"""``qemu:NAME``: the built-in micro VM, brought up on first use; and fresh
VMs restored from a snapshot, one per job (:func:`fresh_qemu`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import TargetError
from ..settings import Settings
from .ssh import SSHTarget

USAGE = "qemu:NAME (the built-in micro VM)"


@dataclass
class QemuTarget(SSHTarget):
    quick_to_start = False
    fresh_per_run = True
    rerun_where = "on a fresh virtual machine"
    rerun_proof = " Each submission had a fresh VM of its own, destroyed afterwards."
    # debootstrap and mkfs.ext4 only until the image is built (doctor.py asks)
    doctor_needs = frozenset({"qemu", "qemu-img", "debootstrap", "mkfs.ext4", "setup: qemu micro VM"})

    def prepare(self, progress=None) -> None:
        """Boot the VM if it is not running (building its image the first time);
        instant when it runs. Points this target at its forwarded SSH port."""
        from ..vm import VM, VMError

        try:
            info = VM(self.name, settings=self.settings).up(progress)
        except VMError as exc:
            raise TargetError(f"{self.spec}: {exc}") from None
        self.point_at(info.as_json())

    def gone(self) -> bool:
        from ..vm import VM

        vm = VM(self.name, settings=self.settings)
        return not vm.running or vm.state().get("port") != self.port

    def unreachable(self) -> str | None:
        from ..vm import VM

        pid = VM(self.name, settings=self.settings).pid()
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                state = fh.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return None
        if state not in ("T", "t"):
            return None
        return (f"{self.spec} is frozen: its qemu process ({pid}) is stopped; "
                f"`kill -CONT {pid}` lets it run again")

    def open(self):
        """Only the host key the tool made for this VM (pinned at its boot) is accepted.
        The VM is up by now (prepare), on this machine: a slow answer is an
        emulated guest waiting for a CPU on a busy server (many students under
        TCG), not a machine that is gone, so its handshake is given a minute."""
        from ..shell.ssh import Endpoint, SSHConnection

        return SSHConnection(Endpoint(self.host, self.port, self.user, self.key), connect_timeout=60, pin="strict")

    def release(self) -> None:
        """A VM restored for this kernel (``vm_restore``) stops with it."""
        from ..vm.machine import VM, process_owner

        vm = VM(self.name, settings=self.settings)
        state = vm.state()
        if self.settings.vm_restore and state.get("ephemeral") and state.get("owner") == process_owner() \
                and vm.dir.exists():
            vm.destroy()

    def sealed_agent(self):
        from ..vm.agent import GuestAgent, is_sealed
        from ..vm.machine import vm_dir

        where = vm_dir(self.name)
        return GuestAgent(where) if is_sealed(where) else None

    def fresh(self, progress=None):
        return fresh_qemu(self, progress)

    def system_changes(self) -> tuple[list[str], list[str]] | None:
        return system_changes(self)

    def not_ready(self) -> tuple[str, str] | None:
        from ..vm.machine import VM

        if VM(self.name, settings=self.settings).running:
            return None
        return f"the VM '{self.name}' is not running", f"workshop vm up {self.name}"

    def switch_note(self) -> str:
        """What the next cell will wait for, said now: %target itself starts nothing, and a
        student who runs the next cell should know it boots a machine (timings: BENCHMARKS.md)."""
        from ..vm.image import image_for
        from ..vm.machine import VM, VMError, kvm_usable

        try:
            if VM(self.name, settings=self.settings).running:
                return f"the VM {self.name} is running: the next cell runs there at once\n"
        except VMError:
            return ""
        kvm, why = kvm_usable(self.settings)
        boot = ("a few seconds with KVM (should KVM fail here, qemu falls back to emulating the CPU: up to a minute)"
                if kvm else f"10-30 s without KVM, as here ({why}): qemu emulates the CPU")
        note = f"the next cell boots the VM {self.name} first: {boot}"
        if not image_for().built:
            note += "; before that, the VM's image is built once (debootstrap): 1-3 minutes"
        return note + ".\n"


TARGET = QemuTarget


def completions() -> list[str]:
    """The micro VMs made on this machine."""
    from ..vm.machine import VM, VMError, vms_dir

    specs = []
    for path in sorted(vms_dir().iterdir()):
        try:
            if VM(path.name).exists:
                specs.append(f"qemu:{path.name}")
        except VMError:  # not a VM's directory (the image cache)
            continue
    return specs


@contextlib.contextmanager
def fresh_qemu(target: QemuTarget, progress=None) -> Iterator[str]:
    """For ``qemu:NAME``, the spec of a new VM ``qemu:NAME-xxxxxxxx`` of its own:
    restored from the VM snapshot (saved once, on demand) on its own disk
    overlay, with its own SSH port, host key (pinned), clock and randomness;
    stopped and removed afterwards (or by the next fresh VM if this process is
    killed).  Boots from scratch when the snapshot cannot be used.  Raises
    TargetError when no VM can be started."""
    from ..vm import VMError
    from ..vm.clone import start_fresh

    try:
        vm = start_fresh(target.name[:54], progress, target.settings)  # room for the suffix in a VM name
    except VMError as exc:
        raise TargetError(f"{target.spec}: {exc}") from None
    try:
        yield f"qemu:{vm.name}"
    finally:
        if vm.dir.exists():
            vm.destroy()


def system_changes(target: QemuTarget) -> tuple[list[str], list[str]] | None:
    """What the student changed in a fresh VM's system during a rerun, and the VM's limits
    their code ran into, asked of its agent after the last cell (None: not a sealed VM)."""
    agent = target.sealed_agent()
    if agent is None:
        return None
    from ..vm.agent import AgentGone, VMBusy

    try:
        return agent.scan()
    except AgentGone as exc:
        return [str(exc)], []
    except VMBusy as exc:
        return [], [str(exc)]


def qemu_target(spec: str, name: str) -> QemuTarget:
    from ..vm import VMError
    from ..vm.machine import check_name

    if not name:
        raise TargetError("'qemu:' needs a VM name, e.g. qemu:workshop")
    try:
        check_name(name)
    except VMError as exc:
        raise TargetError(str(exc)) from None
    return QemuTarget(spec=spec, kind="qemu", name=name, host="127.0.0.1", user="root")


def parse(spec: str, settings: Settings) -> QemuTarget:
    return qemu_target(spec, spec.partition(":")[2])
