"""What Tab offers from the target's shell, answered from a cache within a budget.

A question through the shell costs a round trip through it: over a second on a
VM without KVM, and JupyterLab drops completion replies slower than one.  So
what the target offers is kept here and fetched in the background:

- the shell's commands (with its functions and aliases) and variables, asked
  of the shell once, and again after a cell (which may define new ones);
- directory listings, read by the target's transport itself (SFTP on SSH
  targets, the file system here) in the shell's working directory
  (``/proc/PID/cwd``), never through the shell.

After every cell the cache is stale (a cell may create files or ``cd``): the next
Tab asks again and waits up to :data:`BUDGET` seconds for the answer, else
answers from what it had and the fresh answer serves the Tab after.  A question
the cache cannot answer (``~``, ``$VAR`` on an ``sh`` target, a transport
that cannot list) returns None and goes to the shell as before.
"""

from __future__ import annotations

import logging
import posixpath
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .shell.channels import Entry, Transport

log = logging.getLogger(__name__)

BUDGET = 0.25  # seconds a Tab waits for a fresh listing before using the cached one
# ... and for the shell's words (they seldom change, and asking the shell is slow on a VM)
WORDS_BUDGET = 0.1

# Everything the shell would complete as a command, then an empty line, then its variables.
WORDS = {
    "bash": "compgen -A command 2>/dev/null; builtin printf '\\n'; compgen -A variable 2>/dev/null",
    "sh": ("(IFS=:; for d in $PATH; do for f in \"$d\"/*; do [ -x \"$f\" ] && printf '%s\\n' \"${f##*/}\"; "
           "done; done); printf '\\n'; set | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'"),
}
_OURS = "__ws_"  # the framing's own functions are not the student's commands
_GLOB = set("*?[\\'\"")


class Offers:
    """``where()``: the transport and the shell's pid, None without a live shell;
    ``ask(code, timeout)``: what shell code prints, between cells ("" when it
    cannot run); ``flavour()``: "bash" or "sh"."""

    def __init__(self, where: Callable[[], tuple[Transport, int] | None], ask: Callable[[str, float], str],
                 flavour: Callable[[], str], budget: float = BUDGET, first: float = 5.0) -> None:
        self._where, self._ask, self._flavour = where, ask, flavour
        self.budget = budget
        self.first = first  # the wait when there is nothing to answer from yet
        self._lock = threading.Lock()
        self._generation = 0
        self._cache: dict[tuple, tuple[int, Any]] = {}  # key -> (generation, value)
        self._pending: dict[tuple, Future] = {}
        self._used = False  # Tab was pressed: worth fetching ahead after a cell
        self.ahead = False  # a person presses Tab here (a browser's kernel): fetch before the first Tab

    # ---- what the session tells --------------------------------------------------
    def stale(self, new_shell: bool = False) -> None:
        """A cell ran (``new_shell``: on another shell or target): answers may have
        changed; fetch the working directory's listing ahead if Tab is in use."""
        with self._lock:
            self._generation += 1
            if new_shell:
                self._cache.clear()
            never_asked = ("words",) not in self._cache
        if self._used or self.ahead:  # the working directory's listing, read ahead
            threading.Thread(target=self._listing, args=(".",), name="offers-ahead", daemon=True).start()
        if self.ahead and never_asked:  # the shell's words, once per shell (asking takes the shell a while)
            self._start(("words",), self._read_words)

    # ---- what Tab asks -----------------------------------------------------------
    def complete(self, token: str, command: bool) -> list[str] | None:
        """Completions of ``token`` (``command``: where a command is written), or None
        when the cache cannot answer it and the shell must."""
        if token.startswith("~") or _GLOB & set(token) or (token.startswith("$") and "/" in token):
            return None
        self._used = True
        if token.startswith("$"):
            words = self._get(("words",), self._read_words, WORDS_BUDGET)
            return None if words is None else ["$" + v for v in words[1] if v.startswith(token[1:])]
        head, slash, stem = token.rpartition("/")
        directory = (head or "/") if slash else "."
        entries = self._listing(directory)
        if entries is None:
            return None
        found = [f"{head}{slash}{e.name}{'/' if e.is_dir else ''}" for e in sorted(entries) if e.name.startswith(stem)]
        if command and not slash:
            words = self._get(("words",), self._read_words, WORDS_BUDGET)
            if words is None:
                return None
            found = [w for w in words[0] if w.startswith(token)] + found
        return found

    def _listing(self, directory: str) -> list[Entry] | None:
        if not directory.startswith("/"):
            cwd = self._get(("cwd",), self._read_cwd)
            if cwd is None:
                return None
            directory = posixpath.normpath(posixpath.join(cwd, directory))
        return self._get(("dir", directory), lambda: self._read_dir(directory))

    # ---- the cache -------------------------------------------------------------------
    def _get(self, key: tuple, fetch: Callable[[], Any], budget: float | None = None) -> Any:
        """The value for ``key``: fresh if fetched in time, else the last one; the
        first time, the wait is longer (asking the shell instead would be no quicker)."""
        with self._lock:
            generation, value = self._cache.get(key, (-1, None))
            if generation == self._generation:
                return value
        future = self._start(key, fetch)
        try:
            return future.result(timeout=self.first if generation < 0 else self.budget if budget is None else budget)
        except FutureTimeout:
            return value
        except Exception:  # a Tab key must never cost the student an error
            log.warning("completing from %s failed", key, exc_info=True)
            return value

    def _start(self, key: tuple, fetch: Callable[[], Any]) -> Future:
        with self._lock:
            generation = self._generation
            future = self._pending.get(key)
            if future is not None and future.generation == generation:  # type: ignore[attr-defined]
                return future
            future = self._pending[key] = Future()
            future.generation = generation  # type: ignore[attr-defined]

        def run() -> None:
            try:
                value = fetch()
            except BaseException as exc:
                future.set_exception(exc)
                return
            with self._lock:
                if value is not None and self._cache.get(key, (-1, None))[0] <= generation:
                    self._cache[key] = (generation, value)
            future.set_result(value)

        threading.Thread(target=run, name=f"offers-{key[0]}", daemon=True).start()
        return future

    # ---- fetching ------------------------------------------------------------------------
    def _read_cwd(self) -> str | None:
        where = self._where()
        return where[0].read_link(f"/proc/{where[1]}/cwd") if where else None

    def _read_dir(self, directory: str) -> list[Entry] | None:
        where = self._where()
        return where[0].list_dir(directory) if where else None

    def _read_words(self) -> tuple[list[str], list[str]] | None:
        """(commands, variables), asked of the shell between cells."""
        if self._where() is None:
            return None
        text = self._ask(WORDS.get(self._flavour(), WORDS["sh"]), 30)
        commands, _, variables = text.partition("\n\n")
        if not commands.strip():
            return None
        names = [w for w in dict.fromkeys(commands.splitlines()) if w and not w.startswith(_OURS)]
        return sorted(names), sorted(v for v in set(variables.split()) if not v.startswith(_OURS))
