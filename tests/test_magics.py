"""The container magics, for real: %rootfs, %%chroot, %%overlay, %%unshare,
%%cgroup (v1 and v2), %%file, %cleanup — on this machine and over loopback SSH.

Needs root, overlayfs, util-linux unshare, busybox-static and gcc with static
libc (CI runs as root).  A session-wide check makes sure the mount table and
the cgroup trees are the same after these tests as before them.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from harness import KernelHarness, clean_env

HERE = Path(__file__).parent

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the container magics need root"), pytest.mark.root]


# ---- what must not leak --------------------------------------------------------
def mount_table() -> list[str]:
    """Mount points and what is mounted there (ids left out: they are not state).
    The Docker engine's own mounts (a running container's root under its data
    directory, its network namespaces) are left out: tests in the other lane run
    containers meanwhile, and where the engine shares this mount namespace (a
    fresh root) they would read as ours."""
    rows = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[4].startswith(("/var/lib/docker/", "/run/docker/")):  # its containers and their netns
            continue
        rows.append(" ".join([fields[4], fields[sep + 1], fields[sep + 2]]))
    return sorted(rows)


def cgroup_tree() -> list[str]:
    """Every cgroup directory, except the per-command ones the machine itself
    makes and removes (process_api/<id>) — but ours made inside those count."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        # a course hub's students' cgroups: the hub tests beside these make and remove them
        dirs[:] = [d for d in dirs if not d.startswith("workshop-hub-")]
        for d in dirs:
            path = os.path.join(top, d)
            if "/process_api/" not in path + "/" or "workshop" in path:
                found.append(path)
    return sorted(p for p in found if "/process_api/" not in p or "workshop" in p)


def leftovers() -> list[str]:
    return sorted(str(p) for p in Path("/var/tmp").glob("workshop-*"))


def snapshot_state() -> dict[str, set[str]]:
    return {"mounts": set(mount_table()), "cgroups": set(cgroup_tree()), "snapshot dirs": set(leftovers())}


def added_since(before: dict[str, set[str]]) -> dict[str, set[str]]:
    now = snapshot_state()
    return {kind: now[kind] - before[kind] for kind in now if now[kind] - before[kind]}


@pytest.fixture(scope="session", autouse=True)
def nothing_leaks():
    """The mount table, the cgroup trees and /var/tmp are as before the tests.
    Other test runs on the same machine may add and remove their own entries
    meanwhile: those come and go, a leak stays, so the check waits a little
    for what was added to go away before it fails."""
    before = snapshot_state()
    yield
    assert_nothing_added(before, wait=20)


def assert_nothing_added(before: dict[str, set[str]], wait: float = 10) -> None:
    deadline = time.monotonic() + wait
    left = added_since(before)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = added_since(before)
    assert not left, f"left behind: {left}"


SESSION = secrets.token_hex(3)  # names are unique per test run: runs may overlap


# ---- helpers ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def programs(tmp_path_factory) -> Path:
    """munch (a memory eater) and forkbomb, built static with gcc."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("programs")
    for name in ("munch", "forkbomb"):
        subprocess.run(
            ["gcc", "-static", "-O2", "-o", str(out / name), str(HERE / "programs" / f"{name}.c")],
            check=True,
            capture_output=True,
        )
    return out


def tree_digest(root: Path) -> str:
    """A digest of a directory tree: names, types, modes, link targets, contents."""
    h = hashlib.sha256()
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top, name)
            st = path.lstat()
            h.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0{st.st_uid}\0".encode())
            if path.is_symlink():
                h.update(os.readlink(path).encode())
            elif path.is_file():
                h.update(path.read_bytes())
    return h.hexdigest()


def ok(kernel, code: str, timeout: float = 120):
    result = kernel.run(code, timeout=timeout)
    assert result.status == "ok", (code, result.stdout, result.stderr, result.errors)
    return result


@pytest.fixture
def rootfs(kernel, tmp_path) -> Path:
    root = tmp_path / "rootfs"
    result = ok(kernel, f"%rootfs {root}")
    assert "applet links" in result.stdout
    return root


# ---- %rootfs and %%chroot --------------------------------------------------------------
def test_rootfs_busybox_and_chroot(kernel, rootfs):
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "tmp"):
        assert (rootfs / d).is_dir()
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"
    result = ok(kernel, f'%%chroot {rootfs}\necho "in $(ls /)"; readlink /bin/sh; echo $0')
    assert result.stdout.startswith("in bin\n")
    assert "/bin/busybox\n/bin/sh\n" in result.stdout
    # the shell's own state is untouched by the chroot
    assert ok(kernel, "pwd").stdout.strip() != "/"


def test_rootfs_upload_from_this_machine(kernel, tmp_path):
    root = tmp_path / "up"
    result = ok(kernel, f"%rootfs {root} --upload")
    assert "uploaded from" in result.stdout
    assert (root / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert ok(kernel, f"%%chroot {root}\necho up $((6*7))").stdout.strip() == "up 42"


@pytest.mark.parametrize("upload", ["", " --upload"])
def test_rootfs_dir_is_relative_to_the_shells_directory(kernel, tmp_path, upload):
    ok(kernel, f"cd {tmp_path}")
    result = ok(kernel, f"%rootfs relative{upload}")
    assert f"{tmp_path}/relative" in result.stdout
    assert (tmp_path / "relative" / "bin" / "busybox").is_file()
    assert ok(kernel, "%%chroot relative\necho inside").stdout.strip() == "inside"
    ok(kernel, "cd /")


def test_rootfs_from_tar(kernel, rootfs, tmp_path):
    tarball = tmp_path / "exported.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(rootfs), "."], check=True)
    ok(kernel, f"%rootfs {tmp_path}/fromtar --from tar:{tarball}")
    assert ok(kernel, f"%%chroot {tmp_path}/fromtar\necho tar ok").stdout == "tar ok\n"
    bad = kernel.run(f"%rootfs {tmp_path}/fromtar --from tar:{tarball}")
    assert bad.status == "error" and "not empty" in bad.errors[0]["evalue"]


def test_rootfs_from_oci(kernel, rootfs, tmp_path):
    # Where the target lacks skopeo/umoci, the error says what to install.
    ok(kernel, "__saved_path=$PATH; export PATH=/nonexistent")
    result = kernel.run(f"%rootfs {tmp_path}/oci --from oci:docker.io/library/alpine:3")
    ok(kernel, "export PATH=$__saved_path")
    assert result.status == "error"
    assert (
        "needs skopeo and umoci on the target (Debian/Ubuntu: apt-get install skopeo umoci)"
        in (result.errors[0]["evalue"])
    )
    if not (shutil.which("skopeo") and shutil.which("umoci")):
        pytest.skip("skopeo and umoci are not installed here (apt-get install skopeo umoci)")
    layout = tmp_path / "layout"
    bundle = tmp_path / "bundle"
    _oci_layout(rootfs, layout, bundle)
    ok(kernel, f"%rootfs {tmp_path}/fromoci --from oci:{layout}:v1")
    assert ok(kernel, f"%%chroot {tmp_path}/fromoci\necho oci ok").stdout == "oci ok\n"


def _oci_layout(rootfs, layout, bundle) -> None:
    """An OCI layout at LAYOUT (tag v1) whose one layer is ROOTFS, made with
    umoci; BUNDLE is left unpacked for more layers."""
    def run(*cmd):
        subprocess.run(cmd, check=True, capture_output=True)

    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:v1")
    run("umoci", "unpack", "--image", f"{layout}:v1", str(bundle))
    subprocess.run(["cp", "-a", f"{rootfs}/.", str(bundle / "rootfs")], check=True)
    run("umoci", "repack", "--image", f"{layout}:v1", str(bundle))


def test_rootfs_from_a_local_oci_layout_without_skopeo_or_umoci(kernel, rootfs, tmp_path):
    """Offline and without the OCI tools, the target's python3 unpacks a local layout:
    layers in order, whiteouts applied; an entry that leads out of DIR stops it."""
    if not shutil.which("umoci"):
        pytest.skip("making the layout needs umoci here (apt-get install umoci)")
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    _oci_layout(rootfs, layout, bundle)
    (bundle / "rootfs" / "bin" / "vi").unlink()
    subprocess.run(["umoci", "repack", "--image", f"{layout}:v1", str(bundle)],  # a second layer: vi's whiteout
                   check=True, capture_output=True)
    tools = tmp_path / "no-oci-tools"
    tools.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in os.listdir(folder):
            if tool not in ("skopeo", "umoci") and not (tools / tool).exists():
                (tools / tool).symlink_to(os.path.join(folder, tool))
    ok(kernel, f"__saved_path=$PATH; export PATH={tools}")
    result = kernel.run(f"%rootfs {tmp_path}/fromlayout --from oci:{layout}:v1")
    ok(kernel, "export PATH=$__saved_path")
    assert result.status == "ok", result.stderr
    assert ok(kernel, f"%%chroot {tmp_path}/fromlayout\necho layout ok").stdout == "layout ok\n"
    assert (tmp_path / "fromlayout" / "bin" / "ls").exists() and not (tmp_path / "fromlayout" / "bin" / "vi").exists()


def test_paths_are_paths_never_commands(kernel, tmp_path):
    odd = tmp_path / "a b'c\";$(touch PWNED)`touch PWNED2`"
    ok(kernel, f"cd {tmp_path}")
    quoted = "'" + str(odd).replace("'", "'\\''") + "'"
    ok(kernel, f"%rootfs {quoted}")
    assert ok(kernel, f"%%chroot {quoted}\necho inside").stdout == "inside\n"
    result = ok(kernel, f"%%overlay {quoted}\ntouch /x")
    assert "+ /x" in result.stdout
    assert not list(tmp_path.glob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    assert not (odd / "x").exists()


def test_bad_arguments_give_usage_and_the_kernel_goes_on(kernel, tmp_path):
    cases = {
        "%%chroot\ntrue": "usage: %%chroot ROOTFS",
        f"%%chroot {tmp_path}/nowhere\ntrue": "no such directory",
        f"%%chroot {tmp_path}\ntrue": "not a root filesystem",
        "%%unshare -fz\ntrue": "unknown option -z",  # one wording whatever argparse says (3.11 and 3.13 differ)
        "%%unshare --pidd\ntrue": "usage: %%unshare",
        "%%cgroup --memory lots\ntrue": "--memory takes a size",
        "%%cgroup --pids\ntrue": "--pids needs a value",
        "%%cgroup --v1 --v2\ntrue": "choose one",
        "%%overlay\ntrue": "usage: %%overlay ROOTFS",
        "%overlay frobnicate": "usage: %overlay ls",
        "%%file\nx": "usage: %%file PATH",
        "%%file /tmp/x --mode rwx\nx": "octal mode",
        "%rootfs": "usage: %rootfs DIR",
        f"%rootfs {tmp_path}/r --from http://example.com/x.tar": "unknown source",
        "%overlay rm nosuchsnapshot": "no snapshot named nosuchsnapshot",
    }
    for code, message in cases.items():
        result = kernel.run(code)
        assert result.status == "error", code
        assert message in result.errors[0]["evalue"], (code, result.errors[0]["evalue"])
    assert ok(kernel, "echo still here").stdout == "still here\n"


def test_lsmagic_and_help_show_the_container_magics(kernel):
    listing = ok(kernel, "%lsmagic").stdout
    for usage in (
        "%%chroot ROOTFS",
        "%%overlay ROOTFS [--name NAME]",
        "%overlay ls",
        "%%unshare",
        "%%cgroup [--memory 100M]",
        "%rootfs DIR",
        "%%file PATH [--mode 755]",
        "%cleanup",
    ):
        assert usage in listing
    both = ok(kernel, "%help overlay").stdout
    assert "%%overlay ROOTFS" in both and "%overlay ls | %overlay rm NAME" in both


# ---- %%file ------------------------------------------------------------------------------
def test_file_writes_the_body_exactly(kernel, tmp_path):
    body = "#!/bin/sh\necho 'single' \"double\" \\back\\slash $HOME $(nope) `nope`\n\tx\\n%%end"
    path = tmp_path / "it's a; $(file)"
    quoted = "'" + str(path).replace("'", "'\\''") + "'"
    result = ok(kernel, f"%%file {quoted} --mode 755\n{body}")
    assert path.read_text() == body
    assert oct(path.stat().st_mode & 0o777) == "0o755"
    assert f"wrote {len(body.encode())} bytes" in result.stdout
    ok(kernel, f"%%file {tmp_path}/empty\n")
    assert (tmp_path / "empty").read_bytes() == b""


# ---- %%overlay -------------------------------------------------------------------------
def test_overlay_reports_changes_and_leaves_rootfs_alone(kernel, rootfs):
    (rootfs / "etc" / "motd").write_text("hello\n")
    before = tree_digest(rootfs)
    result = ok(
        kernel,
        f"%%overlay {rootfs}\n"
        "echo made > /made.txt && rm /etc/motd && echo more >> /etc/passwd && cat /made.txt",
    )
    assert result.stdout.startswith("made\n")
    assert (
        "+ /made.txt" in result.stdout and "- /etc/motd" in result.stdout and "~ /etc/passwd" in result.stdout
    )
    changes = result.record["overlay"]
    assert changes["added"] == ["/made.txt"]
    assert changes["deleted"] == ["/etc/motd"]
    assert changes["modified"] == ["/etc/passwd"]
    assert tree_digest(rootfs) == before
    # a fresh snapshot per cell: the last one's changes are gone
    again = ok(kernel, f"%%overlay {rootfs}\ncat /etc/motd; [ ! -e /made.txt ] && echo clean")
    assert again.stdout.startswith("hello\nclean\n")
    assert "changed nothing" in again.stdout


def test_a_full_snapshot_filesystem_is_said_once_with_what_to_do(installed_kernelspec, tmp_path, monkeypatch):
    """/var/tmp, where snapshots are kept, is a small filesystem (a tmpfs of 120 inodes in
    the kernel's own mount namespace) that a named snapshot's cell fills."""
    spec = json.loads((Path(installed_kernelspec) / "kernels" / "workshop" / "kernel.json").read_text())
    mount = "mount -t tmpfs -o size=4m,nr_inodes=120 tmpfs /var/tmp && exec \"$0\" \"$@\""
    spec["argv"] = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, *spec["argv"]]
    kernels = tmp_path / "jupyter" / "kernels" / "workshop-small-var-tmp"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", f"{tmp_path / 'jupyter'}:{installed_kernelspec}")
    kernel = KernelHarness(clean_env(WORKSHOP_TARGET="local"), kernel_name="workshop-small-var-tmp")
    try:
        ok(kernel, f"%rootfs {tmp_path}/root")
        full = kernel.run(f"%%overlay {tmp_path}/root --name big\ni=0; while : > /f$i; do i=$((i+1)); done")
        assert full.stderr.count("No space left on device") == 1, full.stderr
        again = kernel.run(f"%%overlay {tmp_path}/root\ntrue")
        assert again.status == "error"
        message = again.errors[0]["evalue"]
        assert message.count("No space left on device") == 1, message
        assert "free space on the filesystem of /var/tmp" in message and "%overlay rm NAME" in message
        ok(kernel, "%overlay rm big")
        assert ok(kernel, f"%%overlay {tmp_path}/root\necho works").stdout.startswith("works\n")
    finally:
        kernel.shutdown()


def test_named_snapshots_are_kept_and_do_not_see_each_other(kernel, rootfs):
    before = tree_digest(rootfs)
    ok(kernel, f"%%overlay {rootfs} --name one\necho from-one > /note")
    ok(kernel, f"%%overlay {rootfs} --name two\nrm /bin/ls; echo from-two > /other")
    one = ok(kernel, f"%%overlay {rootfs} --name one\ncat /note; ls /bin/ls; [ -e /other ] || echo no-other")
    assert one.stdout.startswith("from-one\n/bin/ls\nno-other\n")
    two = ok(
        kernel, f"%%overlay {rootfs} --name two\n[ -e /note ] || echo no-note; [ -e /bin/ls ] || echo no-ls"
    )
    assert two.stdout.startswith("no-note\nno-ls\n")
    assert two.record["overlay"]["deleted"] == ["/bin/ls"]
    listing = ok(kernel, "%overlay ls").stdout
    assert listing.startswith("one\tof ") and "\ntwo\tof " in listing and "mounted at" in listing
    other = rootfs.parent / "other"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "sh").symlink_to("/bin/busybox")
    clash = kernel.run(f"%%overlay {other} --name one\ntrue")
    assert clash.status == "error" and f"is a snapshot of {rootfs}" in clash.errors[0]["evalue"]
    ok(kernel, "%overlay rm one")
    assert "one\t" not in ok(kernel, "%overlay ls").stdout
    ok(kernel, "%overlay rm two")
    assert ok(kernel, "%overlay ls").stdout == "no named snapshots\n"
    assert tree_digest(rootfs) == before


# ---- %%unshare -------------------------------------------------------------------------
def test_unshare_hostname_stays_inside(kernel):
    host = ok(kernel, "hostname").stdout
    inside = ok(kernel, "%%unshare -u --hostname inside-the-box\nhostname")
    assert inside.stdout == "inside-the-box\n"
    assert ok(kernel, "hostname").stdout == host != "inside-the-box\n"


def test_a_failing_wrapped_body_names_no_wrapper_command(kernel):
    result = kernel.run("%%unshare --uts\necho inside\nfalse")
    assert result.status == "error" and result.exit_status == 1
    assert result.stdout == "inside\n"
    # the body ran in another shell: the record does not pass the wrapper off as the student's command
    assert result.record["failed_commands"] == []
    assert "unshare" not in result.errors[0]["evalue"]


def test_unshare_pid_namespace_with_own_proc(kernel, rootfs):
    # On the host's root: the body's shell is PID 1 and ps sees nothing else.
    result = ok(kernel, "%%unshare -fp --mount-proc\necho pid $$; ps -e -o pid=,comm=")
    assert result.stdout.startswith("pid 1\n")
    processes = [line.split() for line in result.stdout.splitlines()[1:]]
    assert processes[0][0] == "1" and len(processes) <= 3, processes
    assert not any(name in ("sshd", "python", "python3", "jupyter") for _, name in processes)
    # Chrooted: /proc is mounted inside the root, busybox ps sees only the container.
    inside = ok(kernel, f"%%unshare -fmuipn --mount-proc\n%%chroot {rootfs}\necho pid $$; ps")
    lines = inside.stdout.splitlines()
    assert lines[0] == "pid 1"
    pids = [line.split()[0] for line in lines[2:]]
    assert pids[0] == "1" and len(pids) <= 3, lines
    assert "sshd" not in inside.stdout and "python" not in inside.stdout
    # the host's /proc and the rootfs's /proc are as before
    assert ok(kernel, f"ls {rootfs}/proc | wc -l").stdout.strip() == "0"


# ---- %%cgroup ------------------------------------------------------------------------
def _v2_controllers() -> set[str]:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        dev, mnt, kind, *_ = line.split()
        if kind == "cgroup2":
            return set(Path(mnt, "cgroup.controllers").read_text().split())
    return set()


def _v1_controllers() -> set[str]:
    found = set()
    for line in Path("/proc/self/mounts").read_text().splitlines():
        dev, mnt, kind, opts, *_ = line.split()
        if kind == "cgroup":
            found |= set(opts.split(","))
    return found


def need(version: int, *controllers: str) -> None:
    have = _v2_controllers() if version == 2 else _v1_controllers()
    missing = [c for c in controllers if c not in have]
    if missing:
        pytest.skip(f"cgroup v{version} here has no {', '.join(missing)} controller")


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_memory_hog_is_oom_killed(kernel, programs, version):
    need(version, "memory")
    result = kernel.run(f"%%cgroup --v{version} --memory 40M --swap 0\n{programs}/munch 400")
    assert result.status == "error" and result.exit_status == 137
    info = result.record["cgroup"]
    assert info["version"] == version and info["oom_kills"] >= 1
    assert info["memory_peak"] is None or info["memory_peak"] <= 41 << 20
    assert ok(kernel, f"%%cgroup --v{version} --memory 40M --swap 0\n{programs}/munch 10").stdout.startswith(
        "munched 10 MiB\n"
    )
    assert ok(kernel, "echo alive").stdout == "alive\n"


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_fork_bomb_is_contained(kernel, programs, version):
    need(version, "pids")
    result = ok(kernel, f"%%cgroup --v{version} --pids 20\n{programs}/forkbomb 2", timeout=60)
    assert "forks refused: 1" in result.stdout
    info = result.record["cgroup"]
    assert info["pids_max_hits"] > 0 and info["limits"]["pids"] == 20
    assert ok(kernel, "echo alive").stdout == "alive\n"


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_body_runs_in_a_new_cgroup_that_is_removed(kernel, version):
    if version == 2 and not Path("/proc/self/mounts").read_text().count(" cgroup2 "):
        pytest.skip("no cgroup2 hierarchy here")
    result = ok(kernel, f"%%cgroup --v{version} --name probe-{version}-{SESSION}\ncat /proc/self/cgroup")
    info = result.record["cgroup"]
    assert f"/probe-{version}-{SESSION}" in result.stdout and info["kept"] and info["version"] == version
    for path in info["paths"]:
        assert os.path.isdir(path)
    ok(kernel, "%cleanup")
    for path in info["paths"]:
        assert not os.path.exists(path)
    temporary = ok(kernel, f"%%cgroup --v{version}\ncat /proc/self/cgroup").record["cgroup"]
    assert not temporary["kept"] and not any(os.path.exists(p) for p in temporary["paths"])


def test_cgroup_v2_limits_without_controller_give_a_clear_error(kernel):
    if "memory" in _v2_controllers():
        pytest.skip("cgroup v2 has the memory controller here")
    result = kernel.run("%%cgroup --v2 --memory 10M\ntrue")
    assert result.status == "error" and "has no memory controller" in result.errors[0]["evalue"]


# ---- the full container --------------------------------------------------------------
def test_full_stacked_container(kernel, programs, rootfs):
    shutil.copy(programs / "munch", rootfs / "munch")
    shutil.copy(programs / "forkbomb", rootfs / "forkbomb")
    head = (
        "%%cgroup --memory 60M --swap 0 --pids 20\n"
        "%%unshare -fmuipn --mount-proc --hostname container-fun-times\n"
    )
    fine = ok(kernel, head + f"%%chroot {rootfs}\nhostname; echo pid $$; ps | wc -l; ./munch 20")
    lines = fine.stdout.splitlines()
    assert lines[:2] == ["container-fun-times", "pid 1"]
    assert int(lines[2]) <= 4  # header, sh, ps, wc
    assert lines[3] == "munched 20 MiB"
    hog = kernel.run(head + f"%%chroot {rootfs}\n./munch 400")
    assert hog.exit_status == 137 and hog.record["cgroup"]["oom_kills"] >= 1
    # room for 20 processes' memory however long a busy host keeps them alive: this cell is about pids
    roomy = head.replace("--memory 60M", "--memory 150M")
    bomb = ok(kernel, roomy + f"%%overlay {rootfs}\n./forkbomb 2; echo x > /tmp/left", timeout=60)
    assert bomb.record["cgroup"]["pids_max_hits"] > 0
    assert bomb.record["overlay"]["added"] == ["/tmp/left"]
    assert ok(kernel, "hostname").stdout.strip() != "container-fun-times"


# ---- nothing leaks -------------------------------------------------------------------------
def test_interrupted_cell_leaves_nothing(kernel, rootfs):
    before = snapshot_state()
    ok(kernel, "%timeout 2")
    result = kernel.run(
        f"%%cgroup --memory 100M\n%%unshare -fmp --mount-proc\n%%overlay {rootfs}\nsleep 30", timeout=30
    )
    assert result.status == "error" and result.record["timed_out"]
    ok(kernel, "%timeout off")
    assert not any(os.path.exists(p) for p in result.record["cgroup"]["paths"])
    assert_nothing_added(before)
    assert ok(kernel, "echo alive").stdout == "alive\n"


@pytest.mark.slow
def test_cleanup_and_shutdown_undo_named_things(installed_kernelspec, target, tmp_path):
    env = dict(os.environ, WORKSHOP_TARGET=target)
    env.pop("JPY_SESSION_NAME", None)
    kernel = KernelHarness(env)
    root = tmp_path / "r"
    ok(kernel, f"%rootfs {root}")
    before = snapshot_state()
    mounts = mount_table()
    ok(kernel, f"%%cgroup --name keep-me-{SESSION}\n%%overlay {root} --name kept\ntouch /kept")
    assert mount_table() != mounts
    result = ok(kernel, "%cleanup")
    assert (
        "removed overlay snapshot" in result.stdout and f"removed cgroup keep-me-{SESSION}" in result.stdout
    )
    assert_nothing_added(before)
    assert ok(kernel, "%cleanup").stdout == "nothing to clean up\n"
    # and at shutdown, without %cleanup
    ok(kernel, f"%%cgroup --name keep-me-{SESSION}\n%%overlay {root} --name kept\ntouch /kept")
    assert mount_table() != mounts
    kernel.shutdown()
    assert_nothing_added(before)


@pytest.mark.slow
def test_shutdown_with_live_magics_exits_by_itself_and_leaves_nothing(installed_kernelspec, target, tmp_path):
    """Asked to shut down with a snapshot, a cgroup and a background job live, the kernel
    undoes them and exits by itself with status 0: neither terminated by jupyter_client
    (-SIGTERM) nor aborted (-SIGABRT).  jupyter_client sends SIGTERM after half its
    shutdown_wait_time; here that is 15 s, so a loaded machine cannot fail the test.  How
    fast shutdown is, against the 2.5 s of Jupyter's default, is bench/shutdown.py's."""
    kernel = KernelHarness(clean_env(WORKSHOP_TARGET=target))
    root = tmp_path / "r"
    ok(kernel, f"%rootfs {root}")
    before = snapshot_state()
    ok(kernel, f"%%cgroup --name live-{SESSION}\n%%overlay {root} --name live\ntouch /kept")
    ok(kernel, f"%%cgroup --name other-{SESSION} --memory 100M\ntrue")
    ok(kernel, "sleep 4321 &")
    job = int(subprocess.run(["pgrep", "-f", "sleep 4321"], capture_output=True, text=True).stdout.split()[0])
    environ = Path(f"/proc/{job}/environ").read_bytes().split(b"\0")
    nonce = next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"WORKSHOP_SESSION="))
    process = kernel.km.provisioner.process
    kernel.km.shutdown_wait_time = 30.0
    kernel.shutdown()
    assert process.returncode == 0, f"the kernel did not exit by itself: status {process.returncode}"
    assert_nothing_added(before)
    assert not subprocess.run(["pgrep", "-f", "sleep 4321"], capture_output=True).stdout
    assert not Path(f"/tmp/.workshop-{nonce}").exists(), "the shell's state directory is left"
