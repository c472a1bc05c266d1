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


@main.command("run")
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--target", help="Where cells run (overrides the notebook's metadata).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write executed notebooks here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write JUnit XML here: one test case per check.")
@click.option("--timeout", type=float, help="Interrupt any cell after this many seconds.")
@click.option("--keep-going", is_flag=True, help="Run every cell even after one fails.")
def run(notebooks: tuple[Path, ...], target: str | None, out_dir: Path | None, junit_path: Path | None,
        timeout: float | None, keep_going: bool) -> None:
    """Execute notebooks headless; exit non-zero if a check fails or a cell errors."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .errors import NotebookError
    from .reports import junit_xml, run_details, run_headline
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
    if junit_path:
        junit_path.write_text(junit_xml(results), encoding="utf-8")
    sys.exit(1 if failed else 0)


class _GradeBookKind(click.Choice):
    """The kinds of ``--lms``: the names of workshop.lms's registry, read only when click needs them
    (a value to check, the grade command's help), so `workshop --help` stays light."""

    def __init__(self) -> None:  # no choices of its own: see the property
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        from .lms import LMS_KINDS

        return LMS_KINDS


class _GradeBookOption(click.Option):
    """``--lms KIND FILE``, its help naming the kinds of the registry."""

    def make_metavar(self, ctx: click.Context) -> str:
        return f"{'|'.join(self.type.types[0].choices)} FILE"


@main.command("grade")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("submissions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a CSV: a row per student, a column per check, the total.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML report with per-student detail.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every result as JSON.")
@click.option("--feedback", "feedback_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write one feedback page per student (HTML) into this folder.")
@click.option("--lms", "lms", multiple=True, type=(_GradeBookKind(), click.Path(dir_okay=False, path_type=Path)),
              cls=_GradeBookOption, help="Write the grade-book import file of an LMS (once per kind), and beside it NAME-flags.csv: "
                   "a row per flag of every flagged student.")
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
def grade_command(reference: Path, submissions: tuple[Path, ...], csv_path: Path | None, html_path: Path | None,
                  json_path: Path | None, feedback_dir: Path | None, lms: tuple[tuple[str, Path], ...],
                  roster_path: Path | None, assignment: str | None, rerun: bool, target: str | None,
                  on_this_machine: bool, jobs: int, timeout: float | None, submission_timeout: float | None,
                  executor_spec: str | None, out_dir: Path | None, resume: bool, quiet: bool) -> None:
    """Grade executed SUBMISSIONS (files or folders) against the checks of REFERENCE."""
    from rich.console import Console

    from .batch import DEFAULT_CELL_TIMEOUT, DEFAULT_SUBMISSION_TIMEOUT, check_rerun_target, sweep_leftovers
    from .errors import GradingError
    from .lms import RosterError
    from .reports import terminal_text, write_reports

    rerun_only = (target, timeout is not None, submission_timeout is not None, executor_spec, on_this_machine,
                  out_dir, resume)
    if any(rerun_only) and not rerun:
        raise click.UsageError("--target, --timeout, --submission-timeout, --executor, --out, --resume and "
                               "--run-student-code-on-this-machine apply to --rerun")
    if resume and not out_dir:
        raise click.UsageError("--resume continues the batch stored in --out DIR; give the --out of that batch")
    if roster_path and not (lms or feedback_dir):
        raise click.UsageError("--roster names the students of --lms files and --feedback pages; give one of them")
    _check_outputs(lms, csv_path, html_path, json_path)
    console = Console(stderr=True, emoji=False)
    limits = (DEFAULT_CELL_TIMEOUT if timeout is None else timeout or None,
              DEFAULT_SUBMISSION_TIMEOUT if submission_timeout is None else submission_timeout or None)
    try:
        students = _students_for(reference, submissions, lms, roster_path, rerun)  # before anything runs
        if rerun:
            check_rerun_target(target, on_this_machine)  # before anything runs, or a progress bar shows
        sweep_leftovers()  # what the reruns of a grader killed earlier left running
        report = _grade_with_progress(console, reference, submissions, rerun, target, on_this_machine, jobs,
                                      limits, executor_spec, (out_dir, resume))
    except (GradingError, RosterError) as exc:
        console.print(f"[red]error:[/red] {terminal_text(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    for result in report.results:
        if result["error"]:
            console.print(f"[red]✘ {terminal_text(str(result['error']))}[/red]", highlight=False, soft_wrap=True)
    if not quiet:
        _print_results(report)
    write_reports(report, csv_path, html_path, json_path)
    _write_student_files(console, report, students, feedback_dir, lms, assignment)


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


def _check_outputs(lms: tuple[tuple[str, Path], ...], *reports: Path | None) -> None:
    """Refuse, before anything runs, an --lms flags file that would overwrite another output."""
    from .lms import flags_path

    given = {Path(p).resolve(): p for p in [*reports, *(path for _, path in lms)] if p}
    for kind, path in lms:
        clash = given.get(flags_path(path).resolve())
        if clash:
            raise click.UsageError(f"the flags of --lms {kind} {path} go to {flags_path(path)}, which is also "
                              f"the output {clash}: choose another name")


def _students_for(reference: Path, submissions: tuple[Path, ...], lms: tuple[tuple[str, Path], ...],
                  roster_path: Path | None, rerun: bool):
    """Who each submission belongs to (for --lms and --feedback), checked before any grading;
    None when neither is asked for.  LMS totals need every check judged: hidden checks need --rerun."""
    from .grading import expand_paths, load_reference, student_names
    from .lms import RosterError, match_students, read_roster

    if not lms and not roster_path:
        return None
    if lms and not rerun and any(check.hidden for check in load_reference(reference).checks):
        raise RosterError("the reference has hidden checks, which only --rerun scores: an LMS total without "
                          "them would count them as failed; add --rerun --target SPEC")
    kinds = [kind for kind, _ in lms]
    twice = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if twice:
        raise RosterError(f"--lms {twice[0]} is given twice: give each kind once")
    paths = expand_paths(submissions)
    roster = read_roster(roster_path) if roster_path else None
    return match_students(paths, student_names(paths), roster, kinds)


def _write_student_files(console, report, students, feedback_dir: Path | None, lms: tuple[tuple[str, Path], ...],
                         assignment: str | None) -> None:
    from .feedback import write_feedback
    from .lms import write_lms
    from .reports import terminal_text

    name = assignment or report.reference.path.stem
    if feedback_dir:
        titles = [s.name for s in students] if students else None
        files = [s.id for s in students] if students else None
        paths = write_feedback(report, feedback_dir, name, titles=titles, files=files)
        console.print(f"wrote {len(paths)} feedback pages to {terminal_text(str(feedback_dir))}", highlight=False)
    for kind, path in lms:
        flags = write_lms(kind, path, report, students, name)
        console.print(f"wrote the {kind} grade import {terminal_text(str(path))}", highlight=False, soft_wrap=True)
        console.print(_flagged_line(report, kind, flags), highlight=False, soft_wrap=True)
    if lms and report.reference.manual_points:
        console.print(f"[yellow]the {' and '.join(k for k, _ in lms)} totals leave out the "
                      f"{report.reference.manual_points:g} points to grade by hand[/yellow]", highlight=False)


def _flagged_line(report, kind: str, flags: Path) -> str:
    """One line: how many students are flagged, and where their flags are."""
    from .lms import flagged
    from .reports import terminal_text

    count, total = flagged(report), len(report.results)
    where = terminal_text(str(flags))
    if not count:
        return f"no student is flagged: {where} lists no flag"
    kinds = terminal_text(", ".join(sorted({f["kind"] for r in report.results for f in r["flags"]})))
    return (f"[yellow]{count} of {total} students flagged ({kinds}): the {kind} import gives them the points "
            f"their notebooks earned; what was flagged and why is in {where}[/yellow]")


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
    from .grading import Report, grade_submission, load_reference, read_notebook_json
    from .reports import print_self_check, terminal_text

    console = Console(emoji=False)
    try:
        ref = load_reference(notebook)
        assignment = (read_notebook_json(notebook).get("metadata", {}).get("workshop") or {}).get("assignment")
    except GradingError as exc:
        console.print(f"[red]error:[/red] {terminal_text(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    result = grade_submission(ref, notebook, "you")
    sys.exit(0 if print_self_check(Report(ref, [result]), assignment, console) else 1)


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


@main.command("doctor")
@click.option("--target", "spec", help="The target to check (default: $WORKSHOP_TARGET or local).")
def doctor(spec: str | None) -> None:
    """Preflight checks: virtualization, VM tools, and what the target offers."""
    from rich.console import Console
    from rich.table import Table

    from .doctor import run_checks
    from .settings import Settings

    spec = spec or Settings().target or "local"
    checks = run_checks(spec)
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
