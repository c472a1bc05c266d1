"""What a command that ran somewhere left behind: one type for every runner.

A cell in the persistent shell, a hidden helper script of a magic, a check
script, a side command next to the shell: each gives a :class:`CommandResult`.
Streams a caller received live (a cell's output) are not kept here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FailedCommand:
    """A command inside a cell that ended non-zero, as the shell reported it."""

    line: int
    status: int
    command: str


@dataclass
class CommandResult:
    status: int
    stdout: str = ""
    stderr: str = ""
    interrupted: bool = False
    timed_out: bool = False
    # Why the shell itself ended during the command (exit, exec, a lost connection).
    shell_ended: str | None = None
    failed_commands: list[FailedCommand] = field(default_factory=list)
    # Why the command's framing cannot be trusted (a forged end marker...): its
    # output may hold another command's, or miss its own.
    framing: str | None = None
    # What the student changed in the system the command's verdict depends on
    # (a sealed VM's agent reports it for checks): when set, the verdict does not count.
    system_changes: list[str] = field(default_factory=list)
    # bytes that processes an isolated cell left running wrote while a vouched cell ran
    stray_output: int = 0
    # the program that switched to a full-screen display (vim, nano...), which needs a
    # terminal a cell does not have: it was stopped
    needs_terminal: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 0 and not (self.interrupted or self.timed_out or self.shell_ended or self.framing)

    @property
    def output(self) -> str:
        """stdout, then stderr on a line of its own (what a person reads)."""
        if not self.stderr:
            return self.stdout
        joint = "\n" if self.stdout and not self.stdout.endswith("\n") else ""
        return self.stdout + joint + self.stderr

    def problem(self) -> str:
        """One line saying why it failed: its stderr, else its exit status."""
        return self.stderr.strip() or f"exit status {self.status}"
