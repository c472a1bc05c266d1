"""%target SPEC — choose where the following cells run."""

from __future__ import annotations

from argparse import Namespace

from ..errors import MagicError, TargetError
from ..targets import parse_target, target_completions, target_usage
from . import Magic, arguments, register
from .context import CellContext

ARGS = arguments("target")


def _specs(before: list[str]) -> list[str]:
    """How each kind of target starts (local, ssh://, ssh:, qemu:, ...), then what
    each kind knows of on this machine (the micro VMs made here, say)."""
    return target_completions()


ARGS.add_argument("spec", nargs="?", metavar="SPEC", completions=_specs,
                  help=target_usage().removeprefix("targets: ").replace(" | ", ", ")
                  + "; without it, show the current target")


def run(ctx: CellContext, args: Namespace) -> None:
    if args.spec is None:
        ctx.print(f"target: {ctx.target.spec} ({ctx.session.target_source})\n")
        return
    try:
        target = parse_target(args.spec, ctx.session.settings)
    except TargetError as exc:
        raise MagicError(str(exc)) from None
    ctx.session.switch_target(target, source="%target")  # refused when the run fixed the target
    ctx.print(f"target: {target.spec}\n{target.switch_note()}")


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
