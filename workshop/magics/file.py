"""%%file PATH [--mode MODE] — write the cell body to PATH on the target, exactly."""

from __future__ import annotations

import re

from . import Magic, MagicCall, register, usage_error
from .container import parse_args, q

USAGE = "%%file PATH [--mode 755]"


def run(ctx, call: MagicCall, body: str) -> str:
    opts = parse_args(MAGIC, call.args, valued=("--mode",), npos=(1, 1))
    path = opts.positional[0]
    mode = opts.get("--mode")
    if mode is not None and not re.fullmatch(r"[0-7]{3,4}", mode):
        raise usage_error(MAGIC, f"--mode takes an octal mode such as 644 or 0755, not {mode!r}")
    if "\0" in body:
        raise usage_error(MAGIC, "the body contains a NUL character, which a shell cannot write")
    # printf '%s' writes its argument byte for byte: no escapes, no added newline.
    code = f"printf '%s' {q(body)} > {q(path)}"
    if mode is not None:
        code += f" && chmod {mode} {q(path)}"
    size = len(body.encode("utf-8", "surrogateescape"))

    def report(ctx, outcome) -> None:
        if outcome is not None and outcome.status == 0:
            ctx.print(f"wrote {size} bytes to {path}\n")

    ctx.after(report)
    return code


MAGIC = register(Magic("file", USAGE, "write the cell body to PATH on the target, exactly", run, cell=True))
