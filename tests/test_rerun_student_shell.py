"""A student's cell cannot change how the instructor's cells run in a rerun.

Most of a course's points sit on `%expect` lines of the instructor's locked
cells, and their output comes from the shell the student's cells ran in.  One
line in any student cell used to make every later `%expect stdout` pass: a
DEBUG trap that prints the expected lines, a function or alias named like a
command the locked cell calls, `builtin` shadowed so that the shell's own
trap reset did nothing.  In a grading rerun the student's cells now run in a
subshell that hands the next cells only data (variables, arrays, the working
directory, the umask); each attack below is tried through a real kernel and
through a real `workshop grade --rerun`, and the honest submission keeps
every point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from assignment_lab import KERNELSPEC
from harness import KernelHarness, clean_env

from workshop.tasks import VOUCHED

pytestmark = pytest.mark.slow

VOUCH = {VOUCHED: True}

INSTRUCTOR_SETUP = 'greet() { echo "hello $1"; }\ndeclare -i count=1\necho ready'
# what the instructor's cell prints only when the task was done: `name` set and box made
INSTRUCTOR_USES = ('%expect stdout /^hello world$/\n%expect stdout /^box-made$/\n'
                   'greet "$name"\n[ -d box ] && echo box-made')
FAKE = "printf 'hello world\\nbox-made\\n'"

ATTACKS = {
    "debug-trap": f"trap \"{FAKE}\" DEBUG",
    "function-shadows-the-instructors": f"greet() {{ {FAKE}; }}",
    "function-shadows-a-builtin": f"echo() {{ {FAKE}; }}; printf() {{ command printf 'hello world\\nbox-made\\n'; }}",
    "alias": f"shopt -s expand_aliases; alias greet=\"{FAKE};:\"",
    "builtin-shadowed-keeps-the-trap": f"builtin() {{ :; }}; trap \"{FAKE}\" DEBUG",
    "return-trap-and-functrace": f"set -T; trap \"{FAKE}\" RETURN",
    "prompt-command": f"PROMPT_COMMAND=\"{FAKE}\"; PS4='$({FAKE})'; set -x",
    "bash-env-and-path": (f"mkdir -p /tmp/ws-fake-bin; printf '#!/bin/sh\\n{FAKE}\\n' > /tmp/ws-fake-bin/ls; "
                          "chmod +x /tmp/ws-fake-bin/ls; PATH=/tmp/ws-fake-bin:$PATH; export BASH_ENV=/dev/null"),
}


HONEST = "name=world\nmkdir -p box"
SOLUTION = "### BEGIN SOLUTION\n{}\n### END SOLUTION"
TASK_CHECK = '%%check --name box-made\n[ -d box ] || echo "FAIL: there is no directory box"'
# written into the pipe the kernel's commands come through, to run between two cells
INTO_THE_RELAY = f"printf 'greet() {{ {FAKE}; }}\\n' > /proc/$PPID/fd/0; sleep 2"


def root_only():
    if os.geteuid() != 0:
        pytest.skip("reruns on the local target need root")


@pytest.fixture
def isolated_kernel():
    kernel = KernelHarness(clean_env(WORKSHOP_ISOLATE_CELLS="1"))
    yield kernel
    kernel.shutdown()


def checks_passed(result) -> list[bool]:
    return [c["passed"] for c in result.record["checks"]]


# ---- through a kernel, as a rerun runs it ----------------------------------------------
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_students_cell_cannot_fake_the_output_of_a_later_instructor_cell(isolated_kernel, attack):
    k = isolated_kernel
    assert k.run(INSTRUCTOR_SETUP, metadata=VOUCH).stdout == "ready\n"
    k.run(ATTACKS[attack])  # the student's cell: nothing done, only the shell bent
    used = k.run(INSTRUCTOR_USES + "\nls -d /", metadata=VOUCH)
    assert "box-made" not in used.stdout, used.stdout
    assert used.stdout.splitlines()[0] == "hello ", used.stdout  # the instructor's greet, no name given
    assert used.stdout.splitlines()[-1] == "/", used.stdout  # the real ls
    assert checks_passed(used) == [False, False]
    # and the shell is still the instructor's: nothing the attack set is left in it
    state = k.run("trap -p DEBUG RETURN; alias; enable -n; echo \"opts=$- ${PROMPT_COMMAND-none} "
                  "${BASH_ENV-none}\"; type -t echo printf ls", metadata=VOUCH)
    assert "hello world" not in state.stdout, state.stdout
    assert "opts=" in state.stdout and "x" not in state.stdout.split("opts=")[1].split()[0], state.stdout
    assert state.stdout.rstrip().endswith("builtin\nbuiltin\nfile"), state.stdout


def test_the_students_data_reaches_the_next_cells_and_only_data(isolated_kernel, tmp_path):
    k = isolated_kernel
    k.run("declare -i count=1; declare -n ref=count; keep=mine; declare -A table=([a]=1); export SHARED=1",
          metadata=VOUCH)
    trap_file = tmp_path / "ran-in-the-instructors-shell"
    student = k.run(f"cd {tmp_path}; PWD=/etc; umask 027; name=world; arr=(a 'b c' d); unset keep; "
                    f"unset count; count='a[$(touch {trap_file})]'; export NEW=1; SHARED=2; "
                    "ls /nonexistent\nfalse\necho last")
    assert student.stdout == "last\n" and student.exit_status == 0
    assert [(f["line"], f["command"]) for f in student.record["failed_commands"]] == [(1, "ls /nonexistent"),
                                                                                      (2, "false")]
    assert not trap_file.exists()
    seen = k.run('echo "$PWD $(umask) $name ${arr[1]} ${#arr[@]} ${keep-gone} $count ${table[a]}"; '
                 'env | grep -E "^(NEW|SHARED)="', metadata=VOUCH)
    assert seen.stdout == f"{tmp_path} 0027 world b c 3 gone a[$(touch {trap_file})] 1\nSHARED=2\n", seen.stdout
    assert not trap_file.exists()
    # a student's cell that asks for input, and one that is interrupted, still work
    answered = k.run("read -p 'name? ' who; echo \"hi $who\"", allow_stdin=True, on_input=lambda *_: "ada")
    assert answered.stdout.endswith("hi ada\n")
    assert k.run('echo "$who"', metadata=VOUCH).stdout == "ada\n"


def test_an_interrupted_student_cell_leaves_a_working_shell(isolated_kernel):
    k = isolated_kernel
    msg_id = k.kc.execute("x=before-sleep; sleep 30")
    time.sleep(2)
    started = time.monotonic()
    k.interrupt()
    while (reply := k.kc.get_shell_msg(timeout=30))["parent_header"].get("msg_id") != msg_id:
        pass
    assert time.monotonic() - started < 10 and reply["content"]["status"] == "error"
    after = k.run("echo alive ${x-unset}", metadata=VOUCH, timeout=30)
    assert after.stdout.startswith("alive"), after.stdout


def test_code_written_into_the_shells_input_never_runs(isolated_kernel):
    """The shell reads a socket only the relay holds (no path in /proc opens it);
    the relay takes from its own pipe only what the kernel signed."""
    k = isolated_kernel
    direct = k.run("printf 'greet() { echo injected; }\\n' > /proc/$$/fd/0")
    assert "No such device or address" in direct.stderr, direct.stderr
    through_relay = k.run("cat /proc/$PPID/comm; printf 'greet() { echo injected; }\\n' > /proc/$PPID/fd/0; sleep 5")
    assert through_relay.stdout == "workshop-relay\n"
    assert "something else than the kernel wrote to the shell's input" in through_relay.record["framing"]
    after = k.run("type -t greet || echo no-greet", metadata=VOUCH)
    assert "the next cell starts a new shell" in through_relay.stderr
    assert after.stdout == "no-greet\n" and "started a new shell" not in after.stderr  # said once, above


def test_outside_a_rerun_all_cells_share_one_shell():
    k = KernelHarness(clean_env())
    try:
        k.run("greet() { echo hi; }; x=1")
        assert k.run("greet; echo $x").stdout == "hi\n1\n"
    finally:
        k.shutdown()


# ---- through `workshop grade --rerun` ---------------------------------------------------
def _reference(path: Path) -> Path:
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.metadata.workshop = {"target": "local"}
    nb.cells = [
        # not locked: a cell whose code is the reference's is vouched for all the same (its function lives on)
        code("%expect exit 0\n" + INSTRUCTOR_SETUP, id="setup"),
        markdown("**Task.** Set `name` to `world` and make a directory `box` here.", id="task-text"),
        code(SOLUTION.format(HONEST) + "\n" + TASK_CHECK, id="task",
             metadata={"workshop": {"name": "name-and-box", "task": True}}),
        code(INSTRUCTOR_USES, id="uses", metadata={"workshop": {"locked": True}}),
    ]
    nbformat.write(nb, str(path))
    return path


def test_a_rerun_gives_the_shortcuts_nothing_and_the_honest_work_everything(tmp_path, installed_kernelspec):
    root_only()
    ref = _reference(tmp_path / "reference.ipynb")
    subs = tmp_path / "subs"
    subs.mkdir()
    source = json.loads(ref.read_text())
    for who, answer in {"honest": HONEST, "into-the-relay": INTO_THE_RELAY, **ATTACKS}.items():
        nb = json.loads(json.dumps(source))
        task = next(c for c in nb["cells"] if c["id"] == "task")
        task["source"] = f"{SOLUTION.format(answer)}\n{TASK_CHECK}"
        (subs / f"{who}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    out = tmp_path / "grades.json"
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(ref), *sorted(map(str, subs.iterdir())),
                           "--rerun", "--target", "local", "--run-student-code-on-this-machine", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=clean_env(COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    results = {r["student"]: r for r in json.loads(out.read_text())["submissions"]}
    assert results["honest"]["total"] == results["honest"]["max"] == 4, results["honest"]
    assert not results["honest"]["flags"]
    assert "framing-forged" in {f["kind"] for f in results["into-the-relay"]["flags"]}
    for attack in [*ATTACKS, "into-the-relay"]:
        uses = [c for name, c in results[attack]["checks"].items() if name.startswith("cell 3:")]  # `uses`
        assert len(uses) == 2 and not any(c["passed"] for c in uses), (attack, uses)
        assert results[attack]["total"] == 1, (attack, results[attack]["total"])  # the setup cell's exit 0 only
