"""%submit [NOTEBOOK] — hand the saved notebook in to the course (see workshop.exchange)."""

from __future__ import annotations

from argparse import Namespace
from datetime import datetime
from pathlib import Path

from ..errors import ExchangeError, MagicError
from ..exchange.course import Course
from ..exchange.handin import describe, prepare, send
from . import Magic, arguments, register
from .context import CellContext

ARGS = arguments("submit")
ARGS.add_argument("notebook", nargs="?", metavar="NOTEBOOK",
                  help="the .ipynb to hand in (default: the notebook this kernel runs for)")
ARGS.add_argument("--assignment", metavar="NAME", help="the assignment it is for (default: from the notebook)")
ARGS.add_argument("--course", metavar="DIR", help="the course directory (default: $WORKSHOP_COURSE_DIR)")


def _notebook(ctx: CellContext, given: str | None) -> Path:
    if given:
        return Path(given)
    saved = getattr(ctx.session, "notebook", None)
    path = getattr(saved, "path", None)
    if not path:
        raise ExchangeError("this kernel does not know which notebook it runs for; name it: %submit NOTEBOOK.ipynb")
    return Path(path)


def run(ctx: CellContext, args: Namespace) -> None:
    try:
        course = Course.at(args.course)
        ready = prepare(course, _notebook(ctx, args.notebook), args.assignment)
        ctx.print(ready.check.summary() + "\n")
        receipt = send(course, ready)
    except ExchangeError as exc:
        raise MagicError(str(exc)) from None
    age = (datetime.now().astimezone() - ready.saved).total_seconds()
    ctx.print(f"{describe(receipt)}\n")
    ctx.print(f"This is the notebook as saved at {ready.saved:%H:%M:%S}"
              f"{f' ({age / 60:.0f} min ago)' if age >= 90 else ''}: save it (Ctrl+S) and run %submit again "
              "to hand in what you see now; every hand-in is kept.\n")


register(Magic(
    "submit", "hand the saved notebook in to the course: its self-check, then the collector files it", run, ARGS,
    doc="""\
        Runs the notebook's self-check (its visible checks, read from the saved records, as
        workshop check does), then sends the notebook as last saved to the course's collector,
        which files it under your user with the server's time, marks it late after the
        deadline, and keeps every earlier hand-in.  Save the notebook first.  It acts where the
        kernel runs (the course server), whatever the target of the cells.""",
    example="""\
        %submit"""))
