"""pytest plugin: ``pytest --workshop NOTEBOOK_OR_DIR`` makes every check a test.

Each notebook runs once (headless, with the workshop kernel) when its first
check is reached; each ``%expect`` / ``%%check`` of it is one test item whose
failure shows the command, what was expected and what the cell gave.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workshop", "workshop notebooks")
    group.addoption("--workshop", action="append", default=[], metavar="NB_OR_DIR",
                    help="run the checks of these notebooks (files or folders) as tests")
    group.addoption("--workshop-target", default=None, metavar="SPEC",
                    help="where the notebooks' cells run (default: the notebook's own target, or local)")
    group.addoption("--workshop-timeout", type=float, default=None, metavar="S",
                    help="interrupt any notebook cell after S seconds")


def pytest_configure(config: pytest.Config) -> None:
    paths = config.getoption("workshop", default=[])
    if not paths:
        return
    # Collect the given notebooks instead of the default test paths; explicit
    # test arguments are kept.
    given = config.args if config.args_source == pytest.Config.ArgsSource.ARGS else []
    config.args[:] = [*given, *paths]
    config._workshop_roots = [Path(p).resolve() for p in paths]


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    roots = getattr(parent.config, "_workshop_roots", None)
    if not roots or file_path.suffix != ".ipynb" or ".ipynb_checkpoints" in file_path.parts:
        return None
    resolved = file_path.resolve()
    if any(resolved == root or root in resolved.parents for root in roots):
        if ".out" in file_path.suffixes:  # notebooks this plugin or `workshop run` wrote
            return None
        return WorkshopNotebook.from_parent(parent, path=file_path)
    return None


class WorkshopNotebook(pytest.File):
    def collect(self):
        from .errors import GradingError, NoChecksError
        from .grading.reference import load_reference

        try:
            ref = load_reference(self.path)
        except NoChecksError:
            return
        except GradingError as exc:
            raise self.CollectError(str(exc)) from None
        for check in ref.checks:
            yield WorkshopCheck.from_parent(self, name=check.key, key=check.key)

    def results(self):
        """Run the notebook once; the check results by key."""
        cached = getattr(self, "_results", None)
        if cached is None:
            import tempfile

            from .errors import NotebookError
            from .runner import run_notebook

            out_dir = Path(tempfile.mkdtemp(prefix="workshop-pytest-"))
            try:
                run = run_notebook(
                    self.path,
                    out_dir=out_dir,
                    target=self.config.getoption("workshop_target"),
                    timeout=self.config.getoption("workshop_timeout"),
                )
            except NotebookError as exc:
                cached = exc
            else:
                cached = ({c.key: c for c in run.checks}, run)
            self._results = cached
        if isinstance(cached, Exception):
            raise cached
        return cached


class WorkshopCheckFailed(Exception):  # pytest reports it as a failed item
    pass


class WorkshopCheck(pytest.Item):
    def __init__(self, *, key: str, **kwargs):
        super().__init__(**kwargs)
        self.key = key

    def runtest(self) -> None:
        checks, run = self.parent.results()
        check = checks[self.key]
        if not check.passed:
            from .run_reports import failed_check_line

            lines = [failed_check_line(check)]
            if check.status == "missing" and run.error:
                lines.append(f"the notebook stopped early: {run.error}")
            lines.append("command:")
            lines.extend("    " + line for line in (check.command or "(none)").splitlines())
            lines.append(f"expected: {check.expected}")
            got = (check.got or "(nothing)").rstrip("\n")
            lines.append("got:" + ("\n" + "\n".join("    " + g for g in got.splitlines()) if "\n" in got
                                   else f" {got}"))
            raise WorkshopCheckFailed("\n".join(lines))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, WorkshopCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        # Not a suffix of the node id, so pytest does not rewrite its dots.
        return self.path, None, f"{self.path.name}: {self.key}"
