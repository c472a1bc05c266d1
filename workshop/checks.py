"""Checks: what a cell must show, and their evaluation.

Two kinds, written in the cell itself:

``%expect`` line magics above or below the cell's commands state what the
cell's own result must be::

    %expect exit 0
    %expect stdout /^hello .*$/
    %expect stdout-contains hello world
    %expect stderr empty

``%%check`` starts a check script; every line from it to the next ``%%check``
(or the end of the cell) is shell code run on the target right after the cell,
in the same shell but outside any cell magic (chroot, namespaces...)::

    mkdir -p rootfs/bin
    %%check --points 2 --name rootfs-made
    test -d rootfs/bin || echo "FAIL: rootfs/bin is missing"

The script passes when it exits 0; a line ``FAIL: reason`` makes it fail with
that reason.  A cell may hold several of each; a cell made only of ``%%check``
sections checks the state the earlier cells left.

The kernel evaluates both live and puts the results in the cell's record
(``record.checks``).  The grader takes which checks exist, their names and
points from the reference notebook, re-evaluates ``%expect`` against the
submission's saved outputs and takes ``%%check`` results from the record when
the script there is the reference's own (same digest).

A failed check marks the cell ✘ in its badge but does not turn the
``execute_reply`` into an error (so "Run All", ``nbconvert --execute`` and
``workshop run`` go on and report every check); ``workshop run`` and the
pytest plugin fail on it.  Set ``WORKSHOP_FAILED_CHECK=error`` to make a failed
check an error reply as well.  ``%expect exit N`` with N other than 0 makes
that exit status the expected one: the cell is not an error when it ends so.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field

from . import cell as cell_grammar
from .arguments import MagicArguments
from .cell import is_check_line, parse_magic_line  # noqa: F401 (is_check_line: for the grader)
from .errors import CheckSyntaxError, MagicError
from .records import RecordCheck, sha256_text
from .text import first_line, tail

EXPECT_USAGE = (
    "%expect exit N | %expect stdout|stderr /REGEX/[imsx] | "
    "%expect stdout|stderr-contains TEXT | %expect stdout|stderr empty"
)
CHECK_HELP = """\
%%check [--points N] [--name NAME] [--hidden]
    A shell script run on the target right after the cell; exit 0 passes, a line
    'FAIL: reason' gives the reason shown when it fails.  Write it below the
    cell's code: the first line starting with %%check ends the code and starts
    the script; each further %%check line starts another check.  The rule for
    a cell: declarations (%expect lines, %%check sections) stand above or below
    the commands, and %%check sections come last, since each runs to the next
    %%check or the end of the cell.  A cell that starts with %%check is a check
    of the state the earlier cells left.

        mkdir -p rootfs/bin
        %%check --points 2 --name rootfs-made
        test -d rootfs/bin || echo "FAIL: rootfs/bin is missing"

    --hidden marks a check of an assignment that students never see: `workshop
    assign` keeps it in the reference and leaves it out of the student copy, and
    `workshop grade --rerun` scores it.  %expect lines written at the top of a
    %%check --hidden section are hidden expectations of the cell.

    The script runs in the kernel's shell, not inside the cell's %%chroot or
    %%unshare.  Points default to 1 (or metadata.workshop.points), names to
    check-1, check-2...  A failed check marks the cell ✘ and fails
    `workshop run`; the cell itself stays a success unless
    WORKSHOP_FAILED_CHECK=error.  See also %help expect.
"""
EXPECT_HELP = f"""\
{EXPECT_USAGE}
    What the cell's own result must be; lines above or below the cell's commands
    (above its %%check sections), several allowed.
        %expect exit 0                    the exit status (a non-zero N is then not an error)
        %expect stdout /REGEX/            a Python regex searched in stdout (multi-line; flags i m s x)
        %expect stdout-contains TEXT      the text appears in stdout (quote it to keep spaces)
        %expect stderr empty              nothing was written on stderr
    Stdout and stderr mean the text the cell showed.  Results show in the cell's
    badge (✔/✘) and record; the grader re-checks them from the saved outputs.
"""

CHECK_OUTPUT_KEEP = 2000  # characters of a check script's output kept in the record
_STREAMS = ("stdout", "stderr")


@dataclass
class Expectation:
    kind: str  # "exit", "regex", "contains", "empty"
    stream: str | None  # "stdout"/"stderr", None for exit
    value: object = None  # int for exit, pattern text for regex, text for contains
    flags: str = ""
    spec: str = ""  # canonical text after "%expect "
    hidden: bool = False  # written in a %%check --hidden section
    points: float | None = None  # the --points of its hidden section, if any

    @property
    def id(self) -> str:
        return "expect:" + self.spec

    @property
    def name(self) -> str:
        return self.spec

    def describe(self) -> str:
        if self.kind == "exit":
            return f"exit status {self.value}"
        if self.kind == "regex":
            return f"{self.stream} matching /{self.value}/{self.flags}"
        if self.kind == "contains":
            return f"{self.stream} containing {self.value!r}"
        return f"empty {self.stream}"


@dataclass
class ScriptCheck:
    script: str
    name: str
    points: float | None = None  # None: not given on the %%check line
    line: str = "%%check"
    hidden: bool = False  # %%check --hidden: kept out of a student's copy

    @property
    def id(self) -> str:
        return "check:" + self.name

    @property
    def digest(self) -> str:
        return sha256_text(self.script)


@dataclass
class CellChecks:
    """The checks written in one cell's source."""

    expectations: list[Expectation] = field(default_factory=list)
    scripts: list[ScriptCheck] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.expectations or self.scripts)


# ---- parsing ---------------------------------------------------------------
def parse_expect(args: str) -> Expectation:
    """Parse what follows ``%expect``."""
    text = args.strip()
    what, _, rest = text.partition(" ")
    rest = rest.strip()
    if what == "exit":
        try:
            status = int(rest)
        except ValueError:
            raise CheckSyntaxError(f"'{rest}' is not an exit status; usage: {EXPECT_USAGE}") from None
        if not 0 <= status <= 255:
            raise CheckSyntaxError(f"an exit status is 0..255, not {status}; usage: {EXPECT_USAGE}")
        return Expectation("exit", None, status, spec=f"exit {status}")
    stream, dash, mode = what.partition("-")
    if stream not in _STREAMS:
        raise CheckSyntaxError(f"cannot expect '{what}'; usage: {EXPECT_USAGE}")
    if dash:
        if mode != "contains" or not rest:
            raise CheckSyntaxError(f"cannot expect '{text}'; usage: {EXPECT_USAGE}")
        value = rest
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            try:
                (value,) = shlex.split(value)
            except ValueError:
                pass
        return Expectation("contains", stream, value, spec=f"{stream}-contains {rest}")
    if rest == "empty":
        return Expectation("empty", stream, spec=f"{stream} empty")
    match = re.fullmatch(r"/(.*)/([imsx]*)", rest, re.S)
    if not match:
        raise CheckSyntaxError(
            f"'{text}': write the pattern between slashes, e.g. %expect {stream} /done$/; usage: {EXPECT_USAGE}"
        )
    pattern, flags = match.groups()
    try:
        re.compile(pattern)
    except re.error as exc:
        raise CheckSyntaxError(f"bad regular expression /{pattern}/: {exc}") from None
    return Expectation("regex", stream, pattern, flags, spec=f"{stream} /{pattern}/{flags}")


def _check_arguments() -> MagicArguments:
    parser = MagicArguments("%%check")
    parser.add_argument("--points", type=_points, metavar="N", help="what passing is worth in a grade (default 1)")
    parser.add_argument("--name", type=_check_name, metavar="NAME",
                        help="how reports and the grader name the check (default check-1, check-2...)")
    parser.add_argument("--hidden", action="store_true",
                        help="an assignment's check that students never see; `workshop grade --rerun` scores it")
    return parser


def _points(text: str) -> float:
    try:
        points = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--points takes a number, not '{text}'") from None
    if points < 0:
        raise argparse.ArgumentTypeError("--points must not be negative")
    return points


def _check_name(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"a check name has no spaces: '{text}'")
    return text


CHECK_ARGUMENTS = _check_arguments()
CHECK_USAGE = CHECK_ARGUMENTS.usage_line()


def parse_check_line(line: str) -> tuple[str | None, float | None]:
    """Parse ``%%check [--points N] [--name NAME] [--hidden]`` -> (name, points)."""
    options = check_options(line)
    return options.name, options.points


def check_options(line: str) -> argparse.Namespace:
    """The options of a ``%%check`` line: name, points, hidden."""
    try:
        call = parse_magic_line(line, cell=True)
        return CHECK_ARGUMENTS.parse(call.args)
    except MagicError as exc:
        raise CheckSyntaxError(f"{line.strip()}: {exc}") from None


def _is_expect_line(line: str) -> bool:
    stripped = line.strip()
    return stripped == "%expect" or stripped.startswith(("%expect ", "%expect\t"))


def _hidden_expectations(script: str) -> tuple[list[str], str]:
    """(the %expect lines at the top of a hidden section, the script below them)."""
    lines = script.split("\n")
    expects = []
    i = 0
    while i < len(lines) and (_is_expect_line(lines[i]) or not lines[i].strip()):
        if lines[i].strip():
            expects.append(lines[i].strip())
        i += 1
    return expects, "\n".join(lines[i:]).strip("\n")


def split_sections(code: str) -> tuple[str, list[ScriptCheck], list[Expectation]]:
    """Split a cell into (its code, its %%check scripts, the %expect lines of
    its %%check --hidden sections)."""
    code, sections = cell_grammar.split_checks(code)
    scripts: list[ScriptCheck] = []
    hidden_expects: list[Expectation] = []
    for n, section in enumerate(sections):
        options = check_options(section.line)
        script = section.script
        if options.hidden:
            expects, script = _hidden_expectations(script)
            hidden_expects += [_hidden_expectation(line, options.points) for line in expects]
            if expects and not script.strip():
                continue  # a hidden section of %expect lines only
        elif any(_is_expect_line(line) for line in script.split("\n")):
            raise CheckSyntaxError(f"{section.line}: an %expect line inside a check script; write %expect lines "
                                   "above the %%check sections (or at the top of a %%check --hidden section)")
        name = options.name or f"check-{n + 1}"
        if any(s.name == name for s in scripts):
            raise CheckSyntaxError(f"two checks named '{name}' in one cell; give each its own --name")
        if not script.strip():
            raise CheckSyntaxError(f"{section.line} has no script below it; usage: {CHECK_USAGE}")
        scripts.append(ScriptCheck(script, name, options.points, section.line, options.hidden))
    return code, scripts, hidden_expects


def _hidden_expectation(line: str, points: float | None) -> Expectation:
    exp = parse_expect(line.strip()[len("%expect"):])
    exp.hidden, exp.points = True, points
    return exp


def split_checks(code: str) -> tuple[str, list[ScriptCheck]]:
    """Split a cell into (the code the kernel runs, the %%check scripts written below it).

    The %expect lines of a %%check --hidden section join the code's own at its
    top, so that the kernel evaluates them as it does every %expect."""
    code, scripts, hidden = split_sections(code)
    if hidden:
        code = "\n".join([f"%expect {exp.spec}" for exp in hidden] + [code])
    return code, scripts


def cell_checks(source: str) -> CellChecks:
    """All checks written in a cell's source (for the grader and the runner)."""
    code, scripts, hidden = split_sections(source)
    line_magics, _, _ = cell_grammar.split_cell(code, strict=False)
    expectations = [parse_expect(" ".join(call.args)) for call in line_magics if call.name == "expect"]
    return CellChecks(expectations + hidden, scripts)


# ---- evaluation ------------------------------------------------------------
def evaluate(exp: Expectation, exit_status: int, stdout: str, stderr: str) -> tuple[bool, str, str]:
    """-> (passed, message, got)."""
    if exp.kind == "exit":
        ok = exit_status == exp.value
        return ok, ("" if ok else f"exit status {exit_status}, expected {exp.value}"), f"exit status {exit_status}"
    text = stdout if exp.stream == "stdout" else stderr
    got = tail(text, 400) if text else f"(empty {exp.stream})"
    if exp.kind == "empty":
        ok = text == ""
        return ok, ("" if ok else f"{exp.stream} is not empty: {first_line(text)}"), got
    if exp.kind == "contains":
        ok = str(exp.value) in text
        return ok, ("" if ok else f"{exp.stream} does not contain {exp.value!r}"), got
    flags = re.M
    for letter in exp.flags:
        flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}[letter]
    ok = re.search(str(exp.value), text, flags) is not None
    return ok, ("" if ok else f"{exp.stream} does not match /{exp.value}/{exp.flags}"), got


def expectation_result(exp: Expectation, exit_status: int, stdout: str, stderr: str,
                       points: float = 1) -> RecordCheck:
    passed, message, got = evaluate(exp, exit_status, stdout, stderr)
    return {
        "id": exp.id,
        "kind": "expect",
        "name": exp.name,
        "passed": passed,
        "message": message,
        "expected": exp.describe(),
        "got": got,
        "points": points,
    }


def describe_changes(changes: list[str], most: int = 3) -> str:
    """One sentence on what a student changed in the system a verdict depends on."""
    shown = "; ".join(changes[:most]) + (f"; and {len(changes) - most} more" if len(changes) > most else "")
    return f"the system the checks run on was changed ({shown})"


def script_result(check: ScriptCheck, status: int, output: str, points: float = 1,
                  note: str = "") -> RecordCheck:
    """The result of a %%check script from its exit status and output."""
    reasons = [line[5:].strip() for line in output.splitlines() if line.startswith("FAIL:")]
    passed = status == 0 and not reasons and not note
    if passed:
        message = ""
    elif note:
        message = note
    elif reasons:
        message = "; ".join(reasons)
    else:
        message = f"exit status {status}" + (f": {first_line(tail(output, 400))}" if output.strip() else "")
    return {
        "id": check.id,
        "kind": "check",
        "name": check.name,
        "passed": passed,
        "message": message,
        "expected": "the check script exits 0 without a FAIL: line",
        "got": f"exit status {status}" if not note else note,
        "points": points,
        "digest": check.digest,
        "output": tail(output, CHECK_OUTPUT_KEEP),
    }


def without_hidden_checks(source: str) -> str:
    """A code cell's source without its ``%%check --hidden`` sections (the rest as written)."""
    lines = source.split("\n")
    kept: list[str] = []
    hiding = False
    for line in lines:
        if is_check_line(line):
            hiding = bool(check_options(line).hidden)
        if not hiding:
            kept.append(line)
    text = "\n".join(kept)
    return text.rstrip("\n") + ("\n" if source.endswith("\n") and text.strip() else "")
