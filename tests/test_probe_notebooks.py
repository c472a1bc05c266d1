"""The shipped notebooks under their own probe, and named shortcut answers graded through real reruns.

One test function per notebook runs the real ``workshop probe`` CLI on it and
asserts that no shortcut passes a check worth points (select them with
``-m notebook_probe`` or ``-k test_notebook_01``).  The shortcut tests write the
answers a student might try instead of the work — print the expected text, do
the step on the host, look at the directory instead of entering it — into the
student copy, grade them with ``workshop grade --rerun`` and assert that they
earn less than the task's points while the reference's own answers earn all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import KernelHarness, clean_env
from test_honest_tasks import _checks
from test_honest_tasks import _nb01_cells as _cells
from test_notebooks import NOTEBOOKS, leftovers_cleanup

from workshop.assign import release
from workshop.records import multiline_text
from workshop.tasks import CODE, solution_regions

LOCAL = ("--target", "local", "--run-student-code-on-this-machine")
NB01 = next(p for p in NOTEBOOKS if p.stem == "01-rootfs-and-chroot")

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the workshop notebooks and local reruns need root"), pytest.mark.slow, pytest.mark.root]


def workshop(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workshop", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean_env(), "COLUMNS": "250"})


# ---- notebook 01 ------------------------------------------------------------------------
@pytest.mark.notebook_probe
def test_notebook_01_has_no_weak_check(notebook_probe):
    run, report = notebook_probe("01")  # the session's one probe of notebook 01 (tests/conftest.py)
    assert report is not None, run.stdout + run.stderr
    tasks = {t["task"]: t for t in report["tasks"]}
    assert set(tasks) == {"build-rootfs", "enter-rootfs", "mutate"}
    assert [(t, p["problem"]) for t, p in tasks.items() if p["problem"]] == []
    assert report["weak"] == [], report["weak"]
    assert {t: p["full_marks"] for t, p in tasks.items() if p["full_marks"]} == {}
    for name, task in tasks.items():
        kinds = {s["kind"] for s in task["shortcuts"] if not s["error"]}
        assert {"empty", "lines", "printf"} <= kinds, (name, kinds)
    # the lines the old solutions did not need are needed now
    build = {s["shortcut"]: s["earned"] for s in tasks["build-rootfs"]["shortcuts"]}
    assert build["line 5 removed: chmod +x rootfs/bin/busybox"] == 0
    assert all(s["earned"] == 0 for s in tasks["enter-rootfs"]["shortcuts"])
    mutate = {s["kind"]: s["earned"] for s in tasks["mutate"]["shortcuts"] if s["kind"] != "lines"}
    assert mutate == {"empty": 0, "printf": 0}
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no shortcut passed a check" in run.stdout


SANDBOX = """set -e
d=$1; shift
mkdir -p "$d/usr-upper" "$d/usr-work" "$d/root-upper" "$d/root-work"
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$d/usr-upper,workdir=$d/usr-work" /usr
mount -t overlay overlay -o "lowerdir=/root,upperdir=$d/root-upper,workdir=$d/root-work" /root
"$@"
"""


def test_notebook_01_host_shortcut_earns_nothing_and_is_tried_in_a_sandbox(tmp_path, installed_kernelspec):
    """``--shortcut host`` on this machine would run mutate's ``rm /bin/vi`` and ``> /root/note`` on the host:
    the probe runs in a mount namespace of its own, with /usr and /root under overlays that vanish with it."""
    if not Path("/bin").is_symlink():
        pytest.skip("/bin is not a link into /usr, so the overlay on /usr would not cover /bin/vi")
    out = tmp_path / "probe.json"
    vi_before = os.path.lexists("/bin/vi")
    try:
        run = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX, "sh", str(tmp_path / "sandbox"),
             sys.executable, "-m", "workshop", "probe", str(NB01), *LOCAL, "--shortcut", "host", "--json", str(out)],
            capture_output=True, text=True, timeout=900, env={**clean_env(), "COLUMNS": "250"})
    finally:
        leftovers_cleanup()
    assert os.path.lexists("/bin/vi") == vi_before and not os.path.exists("/root/note")  # the host is untouched
    assert run.returncode == 0, run.stdout + run.stderr
    tasks = {t["task"]: t for t in json.loads(out.read_text())[0]["tasks"]}
    [host] = tasks["mutate"]["shortcuts"]
    assert host["kind"] == "host" and host["shortcut"] == "on the host: %%chroot rootfs dropped"
    assert host["error"] is None and host["passed"] == [] and host["earned"] == 0
    # the tasks whose chroot is a command of the answer, not a magic line, have no host variant to try
    assert tasks["build-rootfs"]["shortcuts"] == [] and tasks["enter-rootfs"]["shortcuts"] == []
    # in the sandbox the step really ran on the "host": its upper layers hold the changes
    assert (tmp_path / "sandbox" / "root-upper" / "note").read_text() == "container 1 was here\n"
    if vi_before:
        assert (tmp_path / "sandbox" / "usr-upper" / "bin" / "vi").is_char_device()  # a whiteout: vi deleted


def _solutions(reference: dict) -> dict[str, str]:
    found = {}
    for cell in reference["cells"]:
        lines = multiline_text(cell["source"]).split("\n")
        regions, _ = solution_regions(lines, CODE)
        if cell["cell_type"] == "code" and len(regions) == 1:
            start, end = regions[0]
            found[cell["id"]] = "\n".join(lines[start + 1: end])
    return found


def _submission(student: dict, path: Path, answers: dict[str, str]) -> None:
    nb = json.loads(json.dumps(student))
    for cell in nb["cells"]:
        if cell["id"] in answers:
            source = multiline_text(cell["source"])
            assert "# YOUR CODE HERE" in source, cell["id"]
            cell["source"] = source.replace("# YOUR CODE HERE", answers[cell["id"]])
    path.write_text(json.dumps(nb), encoding="utf-8")


# What a student might write instead of entering the root filesystem.
ENTER_SHORTCUTS = {
    # the reference's listing and the lines under it, printed
    "echo": ("printf '%s\\n' YOU-ARE-HERE bin dev etc linuxrc proc root sbin sys tmp usr\n"
             "echo 'process 4242 runs: sleep 3600'\n"
             "echo \"its root directory, seen from the host: $PWD/rootfs\""),
    # the rootfs looked at from the host, never entered
    "lsrootfs": "ls rootfs",
    # the step done on the host: the listing of rootfs and a process that stays, neither of them chrooted
    "host": "ls rootfs\nsleep 3600 &\ncontainer=$!",
    # a process that stays, made with the host's own program and root, and a variable pointing at it
    "hostsh": "sh -c 'cd rootfs && ls && exec sleep 3600' &\ncontainer=$!",
}


def test_notebook_01_enter_rootfs_shortcuts_earn_less_than_full_marks(tmp_path, installed_kernelspec):
    try:
        rel = release([NB01], tmp_path / "release", target="local")[0]  # the reference is verified by a run
        solutions = _solutions(rel.reference)
        subs = tmp_path / "subs"
        subs.mkdir()
        _submission(rel.student, subs / "honest.ipynb", solutions)
        for name, answer in ENTER_SHORTCUTS.items():
            _submission(rel.student, subs / f"{name}.ipynb", dict(solutions, **{"nb01-chroot-plain": answer}))
        done = workshop("grade", str(tmp_path / "release" / "reference" / NB01.name), str(subs), "--rerun", *LOCAL,
                        "--json", str(tmp_path / "g.json"))
    finally:
        leftovers_cleanup()
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads((tmp_path / "g.json").read_text())
    results = {r["student"]: r for r in report["submissions"]}
    task = next(t for t in report["tasks"] if t["label"] == "enter-rootfs")
    points = {c["key"]: c["points"] for c in report["checks"]}
    full = sum(points[k] for k in task["checks"])
    assert full == 2

    def earned(student: str) -> float:
        return sum(results[student]["checks"][k]["earned"] for k in task["checks"])

    honest = results["honest"]
    assert [k for k in points if not honest["checks"][k]["passed"]] == [], honest["checks"]
    trouble = ("edited-outside-solution", "rerun-error", "timed-out", "target-change-refused")
    for student, result in results.items():
        assert [f for f in result["flags"] if f["kind"] in trouble] == [], (student, result["flags"])
    for name in ENTER_SHORTCUTS:
        assert earned(name) < full, name
        assert earned(name) == 0, {k: results[name]["checks"][k] for k in task["checks"]}
        visible = results[name]["checks"]["enter-rootfs:container-in-rootfs"]
        assert not visible["passed"] and visible["message"], name
    # each says what is wrong
    assert "is empty" in results["echo"]["checks"]["enter-rootfs:container-in-rootfs"]["message"]
    message = results["host"]["checks"]["enter-rootfs:container-in-rootfs"]["message"]
    assert "has / as its root directory" in message and "start it with chroot rootfs" in message
    # the printed text still satisfies the 0-point %expect: it is there for the student, not the grade
    assert results["echo"]["checks"]["enter-rootfs:stdout /^YOU-ARE-HERE$/"]["passed"]
    assert points["enter-rootfs:stdout /^YOU-ARE-HERE$/"] == 0


# ---- notebook 01's checksum (seed step A17), without a task: the checks read the files -------------
@pytest.fixture
def nb01_up_to_the_tarball(installed_kernelspec):
    kernel = KernelHarness(clean_env())
    cells = _cells()
    try:
        for cell_id in ("nb01-workdir", "nb01-busybox", "nb01-build", "nb01-rest"):
            assert kernel.run(cells[cell_id]).status == "ok", cell_id
        yield kernel, cells
    finally:
        kernel.shutdown()
        leftovers_cleanup()


def test_notebook_01_checksum_must_match_the_tarball_and_a_tampered_one_is_refused(nb01_up_to_the_tarball):
    kernel, cells = nb01_up_to_the_tarball
    tar = cells["nb01-tar"]
    # a checksum of the right form that is not the tarball's
    forged = tar.replace("sha256sum rootfs.tar | tee rootfs.tar.sha256",
                         "echo \"$(printf '%064d' 0)  rootfs.tar\" | tee rootfs.tar.sha256")
    assert forged != tar
    checks = _checks(kernel.run(forged))
    assert checks["stdout /^[0-9a-f]{64}  rootfs\\.tar$/"]["passed"]  # the format alone would pass
    assert not checks["checksum-published"]["passed"]
    assert "does not hold the sha256 of rootfs.tar" in checks["checksum-published"]["message"]
    assert kernel.run(cells["nb01-verify"]).exit_status != 0  # and sha256sum -c stops there

    # the real thing
    assert {n: c["message"] for n, c in _checks(kernel.run(tar)).items() if not c["passed"]} == {}
    assert kernel.run(cells["nb01-verify"]).status == "ok"
    tamper = cells["nb01-tamper"]
    # nothing appended: there is nothing to refuse
    untouched = tamper.replace("tar -rf tampered.tar ./backdoor.sh", "true")
    assert untouched != tamper
    checks = _checks(kernel.run(untouched))
    assert not checks["tampered-refused"]["passed"]
    assert "has no backdoor.sh appended" in checks["tampered-refused"]["message"]
    # unpacked without looking at the checksum, and the refusal printed anyway
    careless = tamper.replace("if sha256sum -c tampered.tar.sha256; then", "if true; then")
    careless = careless.replace('echo "unpacked tampered.tar"',
                                'echo "tampered.tar: FAILED"; echo "refused: tampered.tar was not unpacked"')
    assert careless != tamper
    checks = _checks(kernel.run(careless))
    assert not checks["tampered-refused"]["passed"]
    assert "tampered.tar was unpacked" in checks["tampered-refused"]["message"]
    assert kernel.run("rm -rf tampered").status == "ok"
    # the published checksum replaced by the tampered tarball's: the original no longer matches it
    swapped = tamper.replace("sed 's/  rootfs\\.tar$/  tampered.tar/' rootfs.tar.sha256 > tampered.tar.sha256",
                             "sha256sum tampered.tar > tampered.tar.sha256; sha256sum tampered.tar | "
                             "sed 's/tampered/rootfs/' > rootfs.tar.sha256")
    assert swapped != tamper
    checks = _checks(kernel.run(swapped))
    assert not checks["tampered-refused"]["passed"]
    # the cell as written
    assert kernel.run(tar).status == "ok" and kernel.run("rm -rf tampered").status == "ok"
    assert {n: c["message"] for n, c in _checks(kernel.run(tamper)).items() if not c["passed"]} == {}
