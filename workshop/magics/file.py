"""%%file PATH [--mode MODE] — write the cell body to PATH on the target, exactly."""

from __future__ import annotations

import argparse
import re

from ..arguments import FILES
from . import Magic, arguments, register
from ._shared import q
from .context import CellContext


def _mode(text: str) -> str:
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise argparse.ArgumentTypeError(f"--mode takes an octal mode such as 644 or 0755, not {text!r}")
    return text


ARGS = arguments("file", cell=True)
ARGS.add_argument("path", metavar="PATH", completions=FILES,
                  help="the file on the target, made or replaced (its directory must exist)")
ARGS.add_argument("--mode", type=_mode, metavar="755", help="its permissions afterwards, in octal (755: executable)")


def run(ctx: CellContext, args: argparse.Namespace, body: str) -> str:
    if "\0" in body:
        raise MAGIC.usage_error("the body contains a NUL character, which a shell cannot write")
    # printf '%s' writes its argument byte for byte: no escapes, no added newline.
    code = f"printf '%s' {q(body)} > {q(args.path)}"
    if args.mode is not None:
        code += f" && chmod {args.mode} {q(args.path)}"
    size = len(body.encode("utf-8", "surrogateescape"))

    def report(ctx: CellContext, outcome) -> None:
        if outcome is not None and outcome.status == 0:
            ctx.print(f"wrote {size} bytes to {args.path}\n")

    ctx.after(report)
    return code


MAGIC = register(Magic("file", "write the cell body to PATH on the target, exactly", run, ARGS, cell=True,
                       doc="""\
                           The body is data, not shell code: quotes, $, backslashes and
                           lines starting with % are written as they are, without a final
                           newline you did not type.  Handy for scripts and config files
                           that later cells run or read, also inside a rootfs.""",
                       example="""\
                           %%file rootfs/hello.sh --mode 755
                           #!/bin/sh
                           echo "hello from $(hostname)"
                           """))
