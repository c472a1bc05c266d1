"""%target SPEC — choose where the following cells run."""

from __future__ import annotations

import re
from argparse import Namespace

from ..errors import MagicError, TargetError
from ..targets import parse_target, target_usage
from . import Magic, arguments, register
from .context import CellContext

ARGS = arguments("target")


def _specs(before: list[str]) -> list[str]:
    """How each kind of target starts (local, ssh://, ssh:, qemu:, ...), from the
    kinds' USAGE, then the micro VMs made on this machine."""
    from ..vm.machine import VM, VMError, vms_dir

    written = target_usage().removeprefix("targets: ").split(" | ")
    specs = [re.match(r"[a-z]+(?::(?://)?)?", usage)[0] for usage in written]
    for path in sorted(vms_dir().iterdir()):
        try:
            if VM(path.name).exists:
                specs.append(f"qemu:{path.name}")
        except VMError:  # not a VM's directory (the image cache)
            continue
    return list(dict.fromkeys(specs))


ARGS.add_argument("spec", nargs="?", metavar="SPEC", completions=_specs,
                  help="local, ssh://USER@HOST[:PORT], ssh:ALIAS, qemu:NAME, bakerx:NAME or vagrant:NAME; "
                       "without it, show the current target")


def run(ctx: CellContext, args: Namespace) -> None:
    if args.spec is None:
        ctx.print(f"target: {ctx.target.spec} ({ctx.runner.target_source})\n")
        return
    try:
        target = parse_target(args.spec)
    except TargetError as exc:
        raise MagicError(str(exc)) from None
    ctx.runner.switch_target(target, source="%target")  # refused when the run fixed the target
    note = _vm_note(target.spec.removeprefix("qemu:")) if target.spec.startswith("qemu:") else ""
    ctx.print(f"target: {target.spec}\n{note}")


def _vm_note(name: str) -> str:
    """What the next cell will wait for, said now: %target itself starts nothing, and a
    student who runs the next cell should know it boots a machine (timings: BENCHMARKS.md)."""
    from ..vm.image import image_for
    from ..vm.machine import VM, VMError, kvm_usable

    try:
        if VM(name).running:
            return f"the VM {name} is running: the next cell runs there at once\n"
    except VMError:
        return ""
    kvm, why = kvm_usable()
    boot = ("a few seconds with KVM (should KVM fail here, qemu falls back to emulating the CPU: up to a minute)"
            if kvm else f"10-30 s without KVM, as here ({why}): qemu emulates the CPU")
    note = f"the next cell boots the VM {name} first: {boot}"
    if not image_for().built:
        note += "; before that, the VM's image is built once (debootstrap): 1-3 minutes"
    return note + ".\n"


register(Magic("target", "show or choose where cells run", run, ARGS,
               doc="""\
                   The cells after it run there, in a new shell: the old shell's directory,
                   variables and functions stay behind, and %cleanup runs on the old target
                   first.  A notebook may name its target in metadata.workshop.target, and
                   WORKSHOP_TARGET chooses one for every kernel; %target wins over both.
                   A grading rerun fixes the target, and %target is then an error.""",
               example="""\
                   %target qemu:lab
                   uname -a"""))
