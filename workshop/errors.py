"""The errors workshop raises on purpose.

Every one is a :class:`WorkshopError` whose message is meant for a person: one
plain sentence that says what is wrong and how to fix it.  Callers catch the
few subclasses they act on differently; anything else that escapes is a bug.
"""

from __future__ import annotations


class WorkshopError(Exception):
    """Something the user can fix; the message says how."""


class TargetError(WorkshopError):
    """The place cells run cannot be used (a bad spec, an unreachable host, a VM
    that does not boot)."""


class ShellError(WorkshopError):
    """The shell could not be started, ended, or answered nonsense."""


class ChannelClosed(ShellError):
    """The shell's pipes are gone (the shell exited or the connection dropped)."""


class MagicError(WorkshopError):
    """Bad use of a magic or of the cell grammar; the message shows the usage."""


class CheckSyntaxError(MagicError):
    """A ``%expect`` or ``%%check`` line that cannot be parsed."""


class NotebookError(WorkshopError):
    """A notebook that cannot be read, or is not for this kernel."""


class GradingError(NotebookError):
    """A reference or submission that cannot be graded."""


class NoChecksError(GradingError):
    """A reference without a single check: there is nothing to grade."""


class VMError(WorkshopError):
    """The built-in micro VM cannot be built, started, reached or stopped."""


class ImporterError(WorkshopError):
    """A Markdown workshop that cannot be turned into a notebook."""


class AssignmentError(WorkshopError):
    """A source notebook that cannot be released to students; the message lists
    each problem on a line of its own, with the cell number."""


class ExchangeError(WorkshopError):
    """An assignment that cannot be released, fetched, handed in or collected;
    the message says why in one sentence."""
