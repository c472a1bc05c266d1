"""The `workshop` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import __version__


class _PlainErrors(click.Group):
    """File-system errors from any command become one sentence, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PermissionError as exc:
            raise click.ClickException(f"{exc.filename or 'a file'}: permission denied (run as root, or "
                                       "choose another path; for the kernelspec use --user or --sys-prefix)") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"the input is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


@click.group(cls=_PlainErrors)
@click.version_option(__version__, prog_name="workshop")
def main() -> None:
    """Run and grade container-workshop notebooks."""


@main.group()
def kernel() -> None:
    """Install or remove the Jupyter kernel."""


@kernel.command("install")
@click.option("--user", is_flag=True, help="Install for the current user only.")
@click.option("--sys-prefix", is_flag=True, help="Install into this Python's prefix (venv).")
@click.option("--prefix", type=click.Path(file_okay=False), help="Install under this prefix.")
def kernel_install(user: bool, sys_prefix: bool, prefix: str | None) -> None:
    """Install the "Workshop (bash)" kernelspec."""
    from .kernelspec_install import install

    if sum(bool(x) for x in (user, sys_prefix, prefix)) > 1:
        raise click.UsageError("choose one of --user, --sys-prefix, --prefix")
    if sys_prefix:
        prefix = sys.prefix
    path = install(user=user, prefix=prefix)
    click.echo(f"installed kernelspec workshop in {path}")


@kernel.command("remove")
def kernel_remove() -> None:
    """Remove the installed kernelspec."""
    from .kernelspec_install import remove

    path = remove()
    click.echo(f"removed {path}" if path else "the workshop kernelspec was not installed")


def _output_options(command: str):
    """The options of ``command``'s outputs, made from the registry of workshop.outputs:
    ``--NAME PATH`` per writer, ``--GROUP KIND PATH`` (given once per kind) per group of writers."""
    from .outputs import Group, kinds, options

    def decorate(function):
        for name, what in reversed(options(command)):
            if isinstance(what, Group):
                choice = click.Choice(kinds(command, name))
                function = click.option(f"--{name}", name, multiple=True, cls=_KindOption, help=what.help,
                                        type=(choice, click.Path(dir_okay=False, path_type=Path)))(function)
            else:
                path = click.Path(file_okay=not what.folder, dir_okay=what.folder, path_type=Path)
                function = click.option(f"--{name}", name, type=path, help=what.help)(function)
        return function

    return decorate


class _KindOption(click.Option):
    """``--GROUP KIND FILE``, its help naming the kinds."""

    def make_metavar(self, ctx: click.Context) -> str:
        return f"{'|'.join(self.type.types[0].choices)} FILE"


@main.command("run")
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--target", help="Where cells run (overrides the notebook's metadata).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write executed notebooks here.")
@_output_options("run")
@click.option("--timeout", type=float, help="Interrupt any cell after this many seconds.")
@click.option("--keep-going", is_flag=True, help="Run every cell even after one fails.")
def run(notebooks: tuple[Path, ...], target: str | None, out_dir: Path | None, timeout: float | None,
        keep_going: bool, **outputs) -> None:
    """Execute notebooks headless; exit non-zero if a check fails or a cell errors."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .errors import NotebookError
    from .outputs import requested, write_all
    from .run_reports import run_details, run_headline
    from .runner import NotebookResult, run_notebook

    console = Console(stderr=True, emoji=False)
    failed = 0
    results: list[NotebookResult] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        for path in notebooks:
            task = progress.add_task(path.name, total=None)

            def on_cell(cell, total, task=task):
                progress.update(task, total=total, advance=1)

            try:
                result = run_notebook(path, out_dir=out_dir, target=target, timeout=timeout, on_cell=on_cell,
                                      allow_errors=keep_going)
            except NotebookError as exc:
                progress.console.print(f"[red]✘ {escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
                results.append(NotebookResult(path=path, out_path=None, error=str(exc)))
                failed += 1
                continue
            results.append(result)
            where = f" → {escape(str(result.out_path))}"
            if result.ok:
                progress.console.print(f"[green]✔ {escape(str(path))}[/green]: {escape(run_headline(result))}{where}",
                                       highlight=False)
                continue
            failed += 1
            progress.console.print(f"[red]✘ {escape(str(path))}: {escape(run_headline(result))}[/red]{where}",
                                   highlight=False, soft_wrap=True)
            for line in run_details(result):
                progress.console.print(f"    [red]✘[/red] {escape(line)}", highlight=False, soft_wrap=True)
    write_all(requested("run", outputs), results)
    sys.exit(1 if failed else 0)


@main.command("grade")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("submissions", nargs=-1, required=True, type=click.Path(path_type=Path))
@_output_options("grade")
@click.option("--roster", "roster_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Students' ids and names for --lms and --feedback: a CSV with columns id,name[,email].")
@click.option("--assignment", "assignment", help="The assignment's name in --lms files and feedback pages "
                                                 "(default: the reference's file name).")
@click.option("--rerun", is_flag=True, help="Execute each submission again on a fresh target and grade that.")
@click.option("--target", help="With --rerun (required): where submissions run again; qemu:NAME gives each "
                               "submission a fresh VM.")
@click.option("--run-student-code-on-this-machine", "on_this_machine", is_flag=True,
              help="With --rerun --target local: yes, run every student's code on this machine, as this user.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Submissions graded in parallel.")
@click.option("--timeout", type=float,
              help="With --rerun: stop any cell after this many seconds (default 60; 0: no limit).")
@click.option("--submission-timeout", type=float,
              help="With --rerun: stop a submission's whole rerun after this many seconds (default 600; 0: no limit).")
@click.option("--executor", "executor_spec", metavar="dask:ADDRESS",
              help="With --rerun: run the reruns on a Dask cluster's workers instead of --jobs local threads.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --rerun: store each result (OUT/results) and executed notebook (OUT/executed) "
                   "as it arrives.")
@click.option("--resume", is_flag=True, help="With --rerun --out: skip the submissions already done in OUT "
                                             "(a changed submission runs again).")
@click.option("--quiet", "-q", is_flag=True, help="No table on the terminal.")
def grade_command(reference: Path, submissions: tuple[Path, ...], roster_path: Path | None, assignment: str | None,
                  rerun: bool, target: str | None, on_this_machine: bool, jobs: int, timeout: float | None,
                  submission_timeout: float | None, executor_spec: str | None, out_dir: Path | None, resume: bool,
                  quiet: bool, **outputs) -> None:
    """Grade executed SUBMISSIONS (files or folders) against the checks of REFERENCE."""
    from rich.console import Console

    from .batch import DEFAULT_CELL_TIMEOUT, DEFAULT_SUBMISSION_TIMEOUT, check_rerun_target, sweep_leftovers
    from .errors import GradingError
    from .lms import RosterError
    from .outputs import Graded, OutputError, OutputUsageError, check_options, requested, write_all
    from .reports import terminal_text

    rerun_only = (target, timeout is not None, submission_timeout is not None, executor_spec, on_this_machine,
                  out_dir, resume)
    if any(rerun_only) and not rerun:
        raise click.UsageError("--target, --timeout, --submission-timeout, --executor, --out, --resume and "
                               "--run-student-code-on-this-machine apply to --rerun")
    if resume and not out_dir:
        raise click.UsageError("--resume continues the batch stored in --out DIR; give the --out of that batch")
    asked = requested("grade", outputs)
    try:
        check_options(asked, roster_path)
    except OutputUsageError as exc:
        raise click.UsageError(str(exc)) from None
    console = Console(stderr=True, emoji=False)
    limits = (DEFAULT_CELL_TIMEOUT if timeout is None else timeout or None,
              DEFAULT_SUBMISSION_TIMEOUT if submission_timeout is None else submission_timeout or None)
    try:
        students = _students_for(reference, submissions, asked, roster_path, rerun)  # before anything runs
        if rerun:
            check_rerun_target(target, on_this_machine)  # before anything runs, or a progress bar shows
        sweep_leftovers()  # what the reruns of a grader killed earlier left running
        report = _grade_with_progress(console, reference, submissions, rerun, target, on_this_machine, jobs,
                                      limits, executor_spec, (out_dir, resume))
    except (GradingError, RosterError, OutputError) as exc:
        console.print(f"[red]error:[/red] {terminal_text(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    for result in report.results:
        if result["error"]:
            console.print(f"[red]✘ {terminal_text(str(result['error']))}[/red]", highlight=False, soft_wrap=True)
    if not quiet:
        _print_results(report)
    write_all(asked, Graded(report, students, assignment or report.reference.path.stem),
              lambda line: console.print(line, highlight=False, soft_wrap=True))


def _print_results(report) -> None:
    """The table on a terminal; in a log (cron, CI) every grade and flag in full, a line each, nothing drawn."""
    from rich.console import Console

    from .reports import plain_table, plain_text, print_proof, print_table, proof

    out = Console(emoji=False)
    if out.is_terminal:
        print_table(report, out)
        print_proof(report, out)
    else:
        headline, text = proof(report)
        click.echo(plain_table(report) + plain_text(f"{headline}. {text}"))


def _students_for(reference: Path, submissions: tuple[Path, ...], asked, roster_path: Path | None, rerun: bool):
    """Who each submission belongs to (from --roster, or from the file names for an output that needs
    ids), and every output's own checks, before any grading; None when neither is asked for."""
    from .grading.paths import expand_paths, student_names
    from .grading.reference import load_reference
    from .lms import match_students, read_roster
    from .outputs import Plan, check_plan

    paths = expand_paths(submissions)
    check_plan(Plan(reference, paths, rerun, asked, roster_path),
               lambda: any(check.hidden for check in load_reference(reference).checks))
    if not roster_path and not any(writer.needs_ids for writer, _ in asked):
        return None
    roster = read_roster(roster_path) if roster_path else None
    return match_students(paths, student_names(paths), roster, any(w.ids_from_file_names for w, _ in asked))


def _grade_with_progress(console, reference: Path, submissions: tuple[Path, ...], rerun: bool, target: str | None,
                         on_this_machine: bool, jobs: int, limits: tuple[float | None, float | None],
                         executor_spec: str | None, store: tuple[Path | None, bool] = (None, False)):
    from .batch import dask_executor, grade

    if not rerun:
        return grade(reference, submissions, jobs=jobs)
    from .progress import RerunProgress

    executor = dask_executor(executor_spec) if executor_spec else None
    try:
        return grade(reference, submissions, rerun=True, target=target, jobs=jobs, timeout=limits[0],
                     submission_timeout=limits[1], run_student_code_on_this_machine=on_this_machine,
                     executor=executor, out_dir=store[0], resume=store[1],
                     progress=lambda total, done, slots: RerunProgress(console, total, slots, done))
    finally:
        if executor is not None:
            executor.close()


@main.command("assign")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Write OUT/student/NAME.ipynb and OUT/reference/NAME.ipynb here.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Run each reference headless first; refuse to release when its own solution fails a check.")
@click.option("--target", help="With --verify: where the reference runs (default: its metadata.workshop.target, "
                               "$WORKSHOP_TARGET or local).")
@click.option("--timeout", type=float, default=120, show_default=True,
              help="With --verify: stop any cell of the reference after this many seconds.")
def assign_command(sources: tuple[Path, ...], out_dir: Path, verify: bool, target: str | None,
                   timeout: float) -> None:
    """Release assignments: a student copy (solutions and hidden checks removed) and a reference per SOURCE."""
    from .assign import release
    from .errors import AssignmentError

    try:
        releases = release(sources, out_dir, verify_reference=verify, target=target, timeout=timeout or None,
                           on_step=lambda step: click.echo(step, err=True))
    except AssignmentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for rel in releases:
        for note in rel.notes:
            click.echo(f"note: {rel.source}: {note}", err=True)
        ref = rel.ref
        click.echo(f"released {rel.name}: {len(ref.tasks)} tasks, {ref.max_points:g} points from checks "
                   f"({ref.hidden_points:g} of them hidden), {ref.manual_points:g} to grade by hand"
                   f"{'' if verify else '; not verified (--no-verify)'}")
        click.echo(f"  for students: {out_dir / 'student' / (rel.name + '.ipynb')}")
        click.echo(f"  reference:    {out_dir / 'reference' / (rel.name + '.ipynb')}")


@main.command("probe")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", help="Where the shortcut answers run (required): qemu:NAME gives each run a fresh VM.")
@click.option("--run-student-code-on-this-machine", "on_this_machine", is_flag=True,
              help="With --target local: yes, run the shortcut answers on this machine, as this user.")
@click.option("--shortcut", "wanted", multiple=True, type=click.Choice(["empty", "lines", "printf", "host"]),
              help="Try only this shortcut (may be given again); default: all, but host only on a qemu target.")
@click.option("--task", "tasks", multiple=True, help="Probe only the task of this name (may be given again).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write every shortcut run and the weak checks as JSON here (- for standard output).")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Shortcut answers run in parallel (on a qemu target, where each has a VM of its own).")
@click.option("--timeout", type=float, help="Stop any cell after this many seconds (default 60; 0: no limit).")
@click.option("--run-timeout", type=float,
              help="Stop one run of the notebook after this many seconds (default 600; 0: no limit).")
def probe_command(sources: tuple[Path, ...], target: str | None, on_this_machine: bool, wanted: tuple[str, ...],
                  tasks: tuple[str, ...], json_path: Path | None, jobs: int, timeout: float | None,
                  run_timeout: float | None) -> None:
    """Run shortcut answers to every task of each SOURCE and name the checks they pass (weak checks).

    For each task: the empty answer, the solution with each line removed in turn, the reference's
    recorded output printed with printf, and the cell's commands on the host outside its %%chroot,
    %%unshare, %%overlay or %%cgroup. Exits 1 when a check is weak, 2 when a source cannot be probed."""
    import json

    from rich.console import Console

    from .batch import DEFAULT_CELL_TIMEOUT, DEFAULT_SUBMISSION_TIMEOUT
    from .probe import ProbeError, check_target, print_probe, probe
    from .reports import terminal_text

    console = Console(stderr=True, emoji=False)
    if jobs < 1:
        raise click.UsageError("--jobs takes a number of runs at a time, 1 or more")

    def error(message: str) -> None:
        console.print(f"[red]error:[/red] {terminal_text(message)}", highlight=False, soft_wrap=True)

    try:
        check_target(target, on_this_machine, jobs)
    except ProbeError as exc:
        error(str(exc))
        sys.exit(2)
    reports, failed = [], False
    for source in sources:
        try:
            reports.append(probe(
                source, target, wanted=wanted or None, tasks=tasks,
                timeout=DEFAULT_CELL_TIMEOUT if timeout is None else timeout or None,
                run_timeout=DEFAULT_SUBMISSION_TIMEOUT if run_timeout is None else run_timeout or None,
                jobs=jobs, run_student_code_on_this_machine=on_this_machine,
                on_step=lambda step: console.print(terminal_text(step), highlight=False, soft_wrap=True)))
        except ProbeError as exc:
            error(str(exc))
            failed = True
    to_stdout = json_path is not None and str(json_path) == "-"
    out = console if to_stdout else Console(emoji=False)
    for report in reports:
        print_probe(report, out)
    if json_path is not None:
        text = json.dumps([r.as_json() for r in reports], indent=2, ensure_ascii=False) + "\n"
        if to_stdout:
            click.echo(text, nl=False)
        else:
            json_path.write_text(text, encoding="utf-8")
    sys.exit(2 if failed else 1 if any(report.weak for report in reports) else 0)


@main.command("check")
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
def check_command(notebook: Path) -> None:
    """Your score from the visible checks of NOTEBOOK, before you hand it in (nothing runs again)."""
    from rich.console import Console

    from .errors import GradingError
    from .grading.grade import grade_submission
    from .grading.notebook import read_notebook_json
    from .grading.reference import reference_of
    from .grading.results import Report
    from .reports import print_self_check, terminal_text

    console = Console(emoji=False)
    try:
        nb = read_notebook_json(notebook)  # read once: it is the reference and the submission
        ref = reference_of(nb, notebook)
    except GradingError as exc:
        console.print(f"[red]error:[/red] {terminal_text(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    assignment = (nb.get("metadata", {}).get("workshop") or {}).get("assignment")
    result = grade_submission(ref, notebook, "you", notebook=nb)
    sys.exit(0 if print_self_check(Report(ref, [result]), assignment, console) else 1)


# ---- the course exchange: release, fetch, submit, collect ------------------------------
_COURSE = click.option("--course", "course_dir", type=click.Path(file_okay=False, path_type=Path),
                       help="The course directory (default: $WORKSHOP_COURSE_DIR or /srv/workshop-course).")


def _exchange_errors(function):
    """An ExchangeError becomes its sentence on stderr and exit status 2."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from .errors import ExchangeError

        try:
            return function(*args, **kwargs)
        except ExchangeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    return wrapper


@main.command("release")
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_COURSE
@click.option("--deadline", help="When hand-ins become late: 2026-12-24T23:59 (local time) or with a zone "
                                 "(+01:00, Z); a release without it keeps the deadline it had.")
@_exchange_errors
def release_command(notebooks: tuple[Path, ...], course_dir: Path | None, deadline: str | None) -> None:
    """Publish student notebooks (the --out folder of workshop assign, or its student/*.ipynb) to the course,
    read-only for students."""
    from .exchange.course import Course, parse_time, release, student_notebooks

    course = Course.at(course_dir)
    when = parse_time(deadline) if deadline else None
    for given in notebooks:
        for path in student_notebooks(given):
            info = release(course, path, when)
            click.echo(f"released {info['name']} to {course.released / info['name']}; deadline: "
                       f"{info['deadline'] or 'none'}")


@main.command("fetch")
@click.argument("assignments", nargs=-1)
@_COURSE
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="Where the notebooks go (default: ~/assignments).")
@click.option("--force", is_flag=True, help="Fetch again over your copy, which is kept as NAME.ipynb.~N~.")
@_exchange_errors
def fetch_command(assignments: tuple[str, ...], course_dir: Path | None, dest: Path | None, force: bool) -> None:
    """Copy released ASSIGNMENTS (default: all) into your home."""
    from .exchange.course import Course, fetch

    for got in fetch(Course.at(course_dir), list(assignments), dest or Path.home() / "assignments", force):
        what = "fetched" if got.new else "kept your copy (already fetched; --force fetches it again)"
        click.echo(f"{got.name}: {what}: {got.path}; deadline: {got.deadline or 'none'}")


@main.command("submit")
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@_COURSE
@click.option("--assignment", help="The assignment it is for (default: from the notebook, else its file name).")
@_exchange_errors
def submit_command(notebook: Path, course_dir: Path | None, assignment: str | None) -> None:
    """Hand in NOTEBOOK as saved: its self-check first (as workshop check), then the collector files it
    under your user with the server's time."""
    from rich.console import Console

    from .exchange.course import Course
    from .exchange.handin import describe, prepare, send
    from .grading.results import Report
    from .reports import print_self_check

    course = Course.at(course_dir)
    ready = prepare(course, notebook, assignment)
    if ready.check.reference is not None:
        print_self_check(Report(ready.check.reference, [ready.check.result]), ready.check.assignment,
                         Console(emoji=False))
    click.echo(describe(send(course, ready)))


@main.command("collect")
@click.argument("assignment")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Write OUT/USER.ipynb per student (what workshop grade REFERENCE OUT reads), collected.csv "
                   "and roster.csv.")
@_COURSE
@click.option("--on-time", is_flag=True, help="Take each student's latest submission before the deadline.")
@click.option("--replace", is_flag=True, help="Empty OUT of earlier notebooks and lists first.")
@_exchange_errors
def collect_command(assignment: str, out_dir: Path, course_dir: Path | None, on_time: bool, replace: bool) -> None:
    """Gather the latest submission of each student of ASSIGNMENT for workshop grade."""
    from .exchange.collect import collect
    from .exchange.course import Course

    done = collect(Course.at(course_dir), assignment, out_dir, on_time, replace)
    late = sum(1 for row in done.rows if row["late"] and row["status"] == "collected")
    others = [f"{row['student']}: {row['status']}" for row in done.rows if row["status"] != "collected"]
    click.echo(f"collected {done.count} submissions of {assignment} into {out_dir} ({late} late); "
               f"roster: {done.source}")
    for line in others:
        click.echo(f"  {line}")
    click.echo(f"grade them with: workshop grade REFERENCE.ipynb {out_dir}")


@main.group()
def exchange() -> None:
    """The course directory and the collector that files hand-ins."""


@exchange.command("init")
@_COURSE
@click.option("--group", help="The course group: who may hand in, and the roster when there is no hub.")
@click.option("--hub-url", help="A JupyterHub whose users are the roster (its token in $JUPYTERHUB_API_TOKEN).")
@click.option("--max-mb", type=float, help="The largest notebook a student may hand in, in MiB (default 16).")
@click.option("--max-submissions", type=int, help="Hand-ins per student and assignment (default 50).")
@_exchange_errors
def exchange_init(course_dir: Path | None, group: str | None, hub_url: str | None, max_mb: float | None,
                  max_submissions: int | None) -> None:
    """Make the course directory (or change its settings)."""
    from .exchange.course import Course

    course = Course.at(course_dir)
    config = course.init(group=group, hub_url=hub_url, max_bytes=int(max_mb * 2**20) if max_mb else None,
                         max_submissions=max_submissions)
    click.echo(f"course at {course.root}: {', '.join(f'{k}={v}' for k, v in config.items())}")


@exchange.command("serve")
@_COURSE
@_exchange_errors
def exchange_serve(course_dir: Path | None) -> None:
    """Run the collector in the foreground (as the course directory's owner) until stopped."""
    from .exchange.collector import serve
    from .exchange.course import Course

    course = Course.at(course_dir)
    serve(course, ready=lambda: click.echo(f"collecting on {course.socket}", err=True))


@exchange.command("start")
@_COURSE
@_exchange_errors
def exchange_start(course_dir: Path | None) -> None:
    """Start the collector in the background."""
    from .exchange.course import Course
    from .exchange.service import start

    course = Course.at(course_dir)
    click.echo(f"collector started (pid {start(course)}) on {course.socket}")


@exchange.command("status")
@_COURSE
def exchange_status(course_dir: Path | None) -> None:
    """Whether the collector answers, and the released assignments; exit status 1 when it does not."""
    from .exchange.course import Course
    from .exchange.service import status

    course = Course.at(course_dir)
    hello = status(course)
    if hello is None:
        click.echo(f"no collector answers on {course.socket}")
        sys.exit(1)
    click.echo(f"the collector answers on {course.socket}; released: {', '.join(hello['assignments']) or 'nothing'}")


@exchange.command("stop")
@_COURSE
def exchange_stop(course_dir: Path | None) -> None:
    """Stop the collector started with workshop exchange start."""
    from .exchange.course import Course
    from .exchange.service import stop

    click.echo("collector stopped" if stop(Course.at(course_dir)) else "no collector was running")


# ---- the built-in micro VM ------------------------------------------------------


def _vm_progress(console):
    """A rich status line for every step, and a printed line for the milestones."""
    import time

    from rich.markup import escape

    started = time.monotonic()
    status = console.status("starting", spinner="dots")

    def say(text: str) -> None:
        status.update(escape(text))
        if not text.startswith(("debootstrap: ", "waiting")):
            console.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {escape(text)}", highlight=False)

    return status, say


@main.group()
def vm() -> None:
    """The built-in qemu micro VM (target qemu:NAME)."""


@vm.command("up")
@click.argument("name")
@click.option("--memory", type=int, help="Memory in MB (default 1024, or $WORKSHOP_VM_MEMORY).")
@click.option("--cpus", type=int, help="Virtual CPUs (default 2, or $WORKSHOP_VM_CPUS).")
def vm_up(name: str, memory: int | None, cpus: int | None) -> None:
    """Start VM NAME, building its image the first time; instant if it runs."""
    from rich.console import Console
    from rich.markup import escape

    from .vm import VM, VMError

    console = Console(stderr=True, emoji=False)
    status, say = _vm_progress(console)
    try:
        with status:
            info = VM(name).up(say, memory_mb=memory, cpus=cpus)
    except VMError as exc:
        console.print(f"[red]✘ {escape(str(exc))}[/red]", highlight=False)
        sys.exit(1)
    console.print(f"[green]✔[/green] qemu:{name} is up: {escape(info.command())}", highlight=False)


@vm.command("down")
@click.argument("name")
def vm_down(name: str) -> None:
    """Stop VM NAME (its disk stays; `vm up` starts it again)."""
    from .vm import VM, VMError

    try:
        stopped = VM(name).down()
    except VMError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"stopped {name}" if stopped else f"{name} was not running")


@vm.command("destroy")
@click.argument("name")
def vm_destroy(name: str) -> None:
    """Stop VM NAME and delete its disk (the cached image stays)."""
    from .vm import VM, VMError

    try:
        VM(name).destroy()
    except VMError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"destroyed {name}")


@vm.command("list")
def vm_list() -> None:
    """The VMs, their state and SSH ports."""
    from rich.console import Console
    from rich.table import Table

    from .vm import list_vms

    table = Table("name", "state", "accel", "ssh", "boot", "image")
    for machine in list_vms():
        state = machine.state()
        running = machine.running
        table.add_row(
            machine.name,
            "[green]running[/green]" if running else "stopped",
            state.get("accel", "") if running else "",
            f"{state.get('user', 'root')}@127.0.0.1:{state['port']}" if running and state.get("port") else "",
            f"{state['boot_seconds']} s" if running and state.get("boot_seconds") else "",
            os.path.basename(state.get("image", "")),
        )
    Console(emoji=False).print(table)


@vm.command("sweep")
def vm_sweep() -> None:
    """Stop and remove fresh VMs whose grader is gone (killed, crashed)."""
    from .vm.clone import sweep_orphans

    removed = sweep_orphans(click.echo)
    click.echo(f"removed {len(removed)} fresh VM(s) left by processes that are gone")


@vm.command("ssh-info")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["json", "cmd"]), default="json", show_default=True)
def vm_ssh_info(name: str, fmt: str) -> None:
    """How to reach VM NAME: JSON (as bakerx gives it) or an ssh command."""
    import json

    from .vm import VM, VMError

    try:
        info = VM(name).ssh_info()
    except VMError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(info.as_json(), indent=2) if fmt == "json" else info.command())


@main.group()
def docker() -> None:
    """The lab's Docker engine on this machine (Debian's docker.io: `bash scripts/setup --docker`)."""


@docker.command("up")
def docker_up() -> None:
    """Find the engine, or start it (as root): systemd's docker.service, else a dockerd of its own."""
    from .engine import EngineError, engine_up

    try:
        click.echo(engine_up())
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None


@docker.command("down")
def docker_down() -> None:
    """Stop the dockerd `workshop docker up` started (an engine systemd runs is left alone)."""
    from .engine import engine_down

    click.echo(engine_down())


@docker.command("image")
@click.argument("rootfs", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
def docker_image(rootfs: Path, name: str) -> None:
    """Make image NAME from the root filesystem ROOTFS (made by `%rootfs ROOTFS`), offline: tar | docker import."""
    from .engine import EngineError, import_rootfs

    try:
        image = import_rootfs(rootfs, name)
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name}: {image}")


@main.group()
def hub() -> None:
    """The course's JupyterHub on this machine (`bash scripts/setup --hub`), started without systemd."""


_HUB_DIR = click.option("--dir", "hub_dir", type=click.Path(file_okay=False, path_type=Path),
                        default=lambda: os.environ.get("WORKSHOP_HUB_DIR") or "/var/lib/workshop-hub",
                        show_default="$WORKSHOP_HUB_DIR or /var/lib/workshop-hub", help="The hub's directory.")


@hub.command("install")
@_HUB_DIR
@click.option("--course", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The notebooks copied into each student's ~/course.")
@click.option("--ip", help="The address the hub listens on.  [default: 127.0.0.1, or as hub.json has it]")
@click.option("--port", type=int, help="Its port (the next two: the hub's API and the proxy's, on loopback).  "
                                        "[default: 8000, or as hub.json has it]")
@click.option("--group", help="The system group whose users may log in.  [default: students, or as hub.json has it]")
@click.option("--admin", "admins", multiple=True, help="A user who administers the hub (repeat for more; replaces "
                                                        "hub.json's).")
@click.option("--exchange", type=click.Path(file_okay=False, path_type=Path),
              help="The course directory (workshop exchange init) students fetch from when their server starts "
                   "and hand in to; default: $WORKSHOP_COURSE_DIR or /srv/workshop-course.")
def hub_install(hub_dir: Path, course: Path | None, ip: str | None, port: int | None, group: str | None,
                admins: tuple[str, ...], exchange: Path | None) -> None:
    """Lay out the hub's directory: config, proxy (npm), kernelspec, course notebooks; run again with
    --ip, --port, --group, --admin or --exchange to change those in hub.json (restart the hub)."""
    from .errors import WorkshopError
    from .hub.server import install

    try:
        for line in install(hub_dir, course, ip, port, group, admins, exchange):
            click.echo(line)
    except WorkshopError as exc:
        raise click.ClickException(str(exc)) from None


@hub.command("vm")
@_HUB_DIR
def hub_vm(hub_dir: Path) -> None:
    """Build the students' VM image and its snapshot, once, into the hub's VM cache (as root: minutes);
    from then on each student's cells run on a VM of their own (restart the hub)."""
    from .errors import WorkshopError
    from .hub.server import build_vm

    try:
        click.echo(build_vm(hub_dir, lambda text: click.echo(f"  {text}", err=True)))
    except WorkshopError as exc:
        raise click.ClickException(str(exc)) from None


@hub.command("up")
@_HUB_DIR
def hub_up(hub_dir: Path) -> None:
    """Start the hub in the background (pid and log in its directory) and print its address."""
    from .errors import WorkshopError
    from .hub.server import log_file, up

    try:
        address = up(hub_dir)
    except WorkshopError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{address} (log: {log_file(hub_dir)})")


@hub.command("down")
@_HUB_DIR
def hub_down(hub_dir: Path) -> None:
    """Stop the hub, its proxy and the students' servers."""
    from .hub.server import down

    click.echo("stopped" if down(hub_dir) else "no hub was running")


@hub.command("status")
@_HUB_DIR
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def hub_status(hub_dir: Path, as_json: bool) -> None:
    """Whether the hub runs, its address, and each user's running servers. Exits 1 when it does not run."""
    import json

    from .hub.server import status

    info = status(hub_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    elif not info["running"]:
        click.echo(f"no hub is running from {hub_dir}")
    else:
        click.echo(f"running (pid {info['pid']}) at {info['url']}, log {info['log']}")
        for name, servers in sorted(info["users"].items()):
            click.echo(f"  {name}: {'server running' if servers else 'no server'}")
    sys.exit(0 if info["running"] else 1)


@main.command("doctor")
@click.option("--target", "spec", help="The target to check (default: $WORKSHOP_TARGET or local).")
def doctor(spec: str | None) -> None:
    """Preflight checks: virtualization, VM tools, and what the target offers."""
    from rich.console import Console
    from rich.table import Table

    from .doctor import run_checks
    from .settings import Settings

    settings = Settings()
    spec = spec or settings.target or "local"
    checks = run_checks(spec, settings)
    table = Table("", "check", "found", "fix", title=f"workshop doctor (target {spec})")
    failed = 0
    for check in checks:
        if check.ok:
            mark = "[green]✔[/green]"
        elif check.required:
            mark = "[red]✘[/red]"
            failed += 1
        else:
            mark = "[yellow]✘[/yellow]"
        name = check.name + ("" if check.required else " [dim](optional)[/dim]")
        table.add_row(mark, name, check.found, "" if check.ok else check.fix)
    console = Console(emoji=False)
    console.print(table)
    if failed:
        console.print(f"[red]{failed} required check(s) failed[/red]")
    sys.exit(1 if failed else 0)


@main.command("import")
@click.argument("markdown", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="The notebook to write (default: MARKDOWN with .ipynb).")
@click.option("--target", default="local", show_default=True, help="The target named in the notebook's metadata.")
def import_command(markdown: Path, output: Path | None, target: str) -> None:
    """Convert a docable-style Markdown workshop into a notebook with checks."""
    from .importer import ImporterError, import_markdown

    try:
        written, notes = import_markdown(markdown, output, target=target)
    except ImporterError as exc:
        raise click.ClickException(str(exc)) from None
    for note in notes:
        click.echo(f"note: {markdown}: {note}", err=True)
    click.echo(f"wrote {written}")


if __name__ == "__main__":
    main()
