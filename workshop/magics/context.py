"""What a magic may do while its cell runs: the typed context magics get.

Magics never see the kernel or the session.  They get a :class:`CellContext`
with the operations they need: run hidden shell code on the target, upload a
file, register a cleanup, keep state between cells, print, and add to the
cell's record.  The session (``workshop.session``) provides them through the
small :class:`SessionOps` protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import MagicError
from ..records import Record
from ..shell.result import CommandResult

if TYPE_CHECKING:
    from ..checks import Expectation, ScriptCheck
    from ..settings import Settings
    from ..targets import Target

AfterHook = Callable[["CellContext", "CommandResult | None"], None]


class SessionOps(Protocol):
    """The operations of the session (workshop.session.Session) that magics use."""

    settings: Settings
    target: Target
    target_source: str
    timeout: float | None
    notebook: Any  # the saved notebook a front end named for the session (its .path), or None
    timeout_is_default: bool  # the timeout is a notebook's default, not one set

    def run_hidden(self, code: str, timeout: float | None = 60) -> CommandResult: ...
    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult: ...
    def register_cleanup(self, key: str, shell_code: str) -> None: ...
    def forget_cleanup(self, key: str) -> None: ...
    def cleanup_keys(self) -> list[str]: ...
    def run_cleanups(self) -> list[str]: ...
    def sweep_leftovers(self) -> dict[str, list[str]]: ...
    def switch_target(self, target: Target, source: str) -> None: ...
    def state(self, key: str, factory: Callable[[], Any]) -> Any: ...


class CellContext:
    """One cell's run, as magics see it."""

    def __init__(self, session: SessionOps, record: Record, emit: Callable[[str, str], None]):
        self.session = session
        self.record = record
        self._emit = emit  # (stream, text): text of ours, shown and digested with the cell's output
        self.outcome: CommandResult | None = None
        self.expectations: list[Expectation] = []
        self.check_scripts: list[ScriptCheck] = []
        self._after: list[AfterHook] = []
        # What stacked cell magics tell each other (see magics._shared).
        self.stack: dict[str, str] = {}
        # Set when a cell magic wrapped the body: it then runs in another shell
        # (inside unshare, chroot, a cgroup), whose failures bash cannot see.
        self.wrapped = False

    # ---- the target -----------------------------------------------------
    @property
    def target(self) -> Target:
        return self.session.target

    def run_hidden(self, code: str, timeout: float | None = 60) -> CommandResult:
        """Run shell code in the cell's shell without showing its output."""
        return self.session.run_hidden(code, timeout=timeout)

    def run_script(self, script: str, what: str, timeout: float | None = 120) -> str:
        """Run ``script`` (POSIX sh) in a subshell, hidden; its stdout, or a
        MagicError naming ``what`` with the script's stderr."""
        result = self.run_hidden("(\n" + script + "\n)", timeout=timeout)
        if result.status != 0:
            raise MagicError(f"{what}: {result.problem()}")
        return result.stdout

    def upload(self, path: str, data: bytes, mode: str | None = None) -> CommandResult:
        return self.session.upload(path, data, mode)

    # ---- what outlives the cell -----------------------------------------------
    def register_cleanup(self, key: str, shell_code: str) -> None:
        """Shell code that undoes something a magic made (a mount, a cgroup...);
        run by %cleanup, at shutdown and at restart, newest first."""
        self.session.register_cleanup(key, shell_code)

    def forget_cleanup(self, key: str) -> None:
        self.session.forget_cleanup(key)

    def state(self, key: str, factory: Callable[[], Any]) -> Any:
        """State a magic keeps between cells of this session (named snapshots...)."""
        return self.session.state(key, factory)

    def after(self, hook: AfterHook) -> None:
        """Run ``hook(ctx, outcome)`` once the cell's shell code has finished,
        also when it failed or was interrupted (outcome is None if it never ran)."""
        self._after.append(hook)

    def run_after_hooks(self, report: Callable[[Exception], None]) -> None:
        for hook in self._after:
            try:
                hook(self, self.outcome)
            except Exception as exc:  # one hook's failure must not skip the others' cleanup
                report(exc)

    # ---- what the student sees and the record keeps --------------------------
    def print(self, text: str, stream: str = "stdout") -> None:
        self._emit(stream, text)

    def notice(self, text: str) -> None:
        self.record.notices.append(text)
        self._emit("stderr", f"workshop: {text}\n")

    def expect(self, expectation: Expectation) -> None:
        """Evaluate ``expectation`` once the cell ran (``%expect``)."""
        self.expectations.append(expectation)
        # checks read the streams' text, which is otherwise not kept
        self.record.stdout.keep_text = self.record.stderr.keep_text = True
        if expectation.kind == "exit":
            self.record.expected_exit = int(expectation.value)
