"""Tab and Shift-Tab through a real kernel: magics, their declared arguments,
the target's shell words, %help for every magic, and the Help menu's links."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest

from workshop import magics

README = Path(__file__).resolve().parent.parent / "README.md"


def completes(kernel, code: str, cursor: int | None = None) -> tuple[list[str], int, int]:
    reply = kernel.complete(code, cursor)
    assert reply["status"] == "ok"
    return reply["matches"], reply["cursor_start"], reply["cursor_end"]


def inspects(kernel, code: str, cursor: int | None = None, detail_level: int = 0) -> dict:
    msg_id = kernel.kc.inspect(code, len(code) if cursor is None else cursor, detail_level)
    while True:
        msg = kernel.kc.shell_channel.get_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            assert msg["content"]["status"] == "ok"
            return msg["content"]


# ---- Tab ---------------------------------------------------------------------------------
def test_tab_completes_magic_names(shared_kernel):
    kernel = shared_kernel
    assert completes(kernel, "%ta") == (["%target"], 0, 3)
    assert completes(kernel, "%ti") == (["%timeout"], 0, 3)
    assert completes(kernel, "%%ch") == (["%%check", "%%chroot"], 0, 4)
    # a name that only has a cell form is offered written as one
    assert completes(kernel, "%ch") == (["%%check", "%%chroot"], 0, 3)
    assert "%overlay" in completes(kernel, "%ov")[0] and "%%overlay" in completes(kernel, "%ov")[0]
    assert completes(kernel, "%%ta")[0] == []
    # JupyterLab sends the whole cell and the cursor: offsets are into the cell
    cell = "%expect exit 0\n  %ta\necho after"
    assert completes(kernel, cell, cell.index("%ta") + 3) == (["%target"], 17, 20)
    # the cursor inside a word completes what stands before it
    assert completes(kernel, "%target", 3) == (["%target"], 0, 3)


def test_tab_completes_magic_arguments_from_their_declarations(shared_kernel):
    kernel = shared_kernel
    assert completes(kernel, "%help ch") == (["check", "chroot"], 6, 8)
    magics.load_all()
    assert completes(kernel, "%help ") == (sorted(magics.names()), 6, 6)
    assert completes(kernel, "%expect std") == (["stdout", "stderr", "stdout-contains", "stderr-contains"], 8, 11)
    assert completes(kernel, "%expect stdout e") == (["empty"], 15, 16)
    assert completes(kernel, "%expect e") == (["exit"], 8, 9)
    assert completes(kernel, "%target q") == (["qemu:"], 8, 9)
    kinds = completes(kernel, "%target ")[0]
    assert {"local", "ssh://", "ssh:", "qemu:", "bakerx:", "vagrant:"} <= set(kinds)
    assert completes(kernel, "%%cgroup --memory 100M --p") == (["--pids"], 23, 26)
    assert completes(kernel, "%%cgroup --v") == (["--v1", "--v2"], 9, 12)
    assert completes(kernel, "%%unshare -f --mo") == (["--mount", "--mount-proc"], 13, 17)
    assert completes(kernel, "%overlay r") == (["rm"], 9, 10)
    assert completes(kernel, "%rootfs dir --from o") == (["oci:"], 19, 20)
    assert completes(kernel, "%timeout o") == (["off"], 9, 10)
    assert completes(kernel, "%%check --h") == (["--hidden"], 8, 11)
    # a magic's line never offers shell commands
    assert completes(kernel, "%nosuchmagic ec")[0] == []
    assert completes(kernel, "%%cgroup --memory ")[0] == []


def test_tab_completes_paths_in_magic_arguments(kernel, tmp_path):
    (tmp_path / "rootfs" / "bin").mkdir(parents=True)
    (tmp_path / "root.txt").write_text("")
    kernel.run(f"cd {tmp_path}")
    matches, start, end = completes(kernel, "%%chroot ro")
    assert sorted(matches) == ["root.txt", "rootfs/"] and (start, end) == (9, 11)
    assert completes(kernel, f"%%overlay {tmp_path}/rootfs/b") == ([f"{tmp_path}/rootfs/bin/"], 10,
                                                                   10 + len(f"{tmp_path}/rootfs/b"))
    # a path, never a command, even where a command of that name exists
    assert completes(kernel, "%rootfs ech")[0] == []
    kernel.run("cd /")


def test_tab_still_completes_shell_words(kernel, tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.txt").write_text("")
    matches, start, end = completes(kernel, "ech")
    assert "echo" in matches and (start, end) == (0, 3)
    matches, start, end = completes(kernel, f"ls {tmp_path}/")
    assert sorted(matches) == [f"{tmp_path}/dir/", f"{tmp_path}/file.txt"]
    assert (start, end) == (3, 4 + len(str(tmp_path)))
    # shell lines below magics are shell: the body of %%chroot, a %%check script
    cell = f"%%chroot rootfs\nls {tmp_path}/fi"
    assert completes(kernel, cell) == ([f"{tmp_path}/file.txt"], 19, len(cell))
    cell = f"echo hi\n%%check\ntest -e {tmp_path}/di"
    assert completes(kernel, cell) == ([f"{tmp_path}/dir/"], cell.index(str(tmp_path)), len(cell))



def test_tab_offers_commands_only_where_a_command_is_written(kernel, tmp_path):
    """As bash: an argument completes to files (`ls ech` is not `echo`), a command's
    place to commands and files (after `;`, `|`, `$(`, assignments, `sudo`...)."""
    (tmp_path / "echoes").mkdir()
    assert kernel.run(f"cd {tmp_path}").status == "ok"
    assert completes(kernel, "ls ech")[0] == ["echoes/"]
    assert completes(kernel, "cat notes | grep -r ech")[0] == ["echoes/"]
    for code in ("ech", "true; ech", "ls | ech", "x=$(ech", "FOO=1 ech", "sudo ech", "if ech", "true && ech"):
        matches = completes(kernel, code)[0]
        assert "echo" in matches and "echoes/" in matches, (code, matches)


# ---- Shift-Tab -----------------------------------------------------------------------------
def test_inspect_a_magic_shows_its_help(shared_kernel):
    kernel = shared_kernel
    for code in ("%%chroot", "%chroot", "%%chroot rootfs", "%%chroot rootfs\nls"):
        reply = inspects(kernel, code, 3)
        assert reply["found"], code
        text = reply["data"]["text/plain"]
        assert text.startswith("%%chroot ROOTFS") and "example:" in text and "holding a root filesystem" in text
    reply = inspects(kernel, "%help unshare", len("%help uns"))
    assert reply["data"]["text/plain"].startswith("%%unshare")
    both = inspects(kernel, "%overlay ls")["data"]["text/plain"]
    assert both.startswith("%overlay ls | %overlay rm NAME") and "%%overlay ROOTFS" in both


def test_inspect_shell_words_asks_the_target(kernel):
    reply = inspects(kernel, "cd /tmp", 1)
    assert reply["found"]
    assert "cd is a shell builtin" in reply["data"]["text/plain"]
    assert "Change the shell working directory" in reply["data"]["text/plain"]  # bash's help cd
    text = inspects(kernel, "ls -l /", 2)["data"]["text/plain"]
    assert re.search(r"^ls is (/usr)?/bin/ls$", text, re.M)
    assert "list directory contents" in text.lower() or "list information about the files" in text.lower()
    assert len(text.splitlines()) < 60  # the first lines, not the whole manual
    longer = inspects(kernel, "ls -l /", 2, detail_level=1)["data"]["text/plain"]
    assert len(longer.splitlines()) > len(text.splitlines())
    assert "\x08" not in longer
    # the student's own functions and aliases, as their cells see them
    kernel.run("shout() { echo HEY; }")
    assert "shout is a function" in inspects(kernel, "shout", 2)["data"]["text/plain"]
    assert inspects(kernel, "if true; then :; fi", 1)["data"]["text/plain"].startswith("if is a shell keyword")
    # not a command: nothing found, and nothing made up
    for code in ("nosuchcommand-ws", "echo $HOME", "   "):
        reply = inspects(kernel, code, len(code))
        assert reply["found"] is False and reply["data"] == {}, code
    assert kernel.run("echo still fine").stdout == "still fine\n"


def test_inspect_never_runs_a_students_program_and_never_hangs(kernel, tmp_path):
    """`--help` would run the program: a script of the student's must not run, and a
    system program that waits (for input, or forever) must not hold the kernel."""
    ran = tmp_path / "ran"
    script = f"#!/bin/sh\ntouch {ran}\n"
    (tmp_path / "mine").write_text(script)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mine-too").write_text(script)
    kernel.run(f"chmod +x {tmp_path}/mine {tmp_path}/bin/mine-too; cd {tmp_path}; PATH={tmp_path}/bin:$PATH")
    assert inspects(kernel, "./mine")["found"]  # type says what it is...
    assert "mine-too is " in inspects(kernel, "mine-too")["data"]["text/plain"]
    assert not ran.exists()  # ...and it did not run
    # nor do the student's functions and aliases named like the commands the lookup uses
    kernel.run(f"type() {{ touch {ran}; }}; head() {{ touch {ran}; }}; alias man='touch {ran}; man'")
    assert re.search(r"^ls is (/usr)?/bin/ls$", inspects(kernel, "ls")["data"]["text/plain"], re.M)
    assert not ran.exists()
    kernel.run("unset -f type head; unalias man")
    name = f"ws-inspect-hang-{secrets.token_hex(4)}"
    waiter = Path("/usr/local/bin") / name
    waiter.write_text("#!/bin/sh\nread answer\nexec sleep 300\n")
    waiter.chmod(0o755)
    try:
        reply = inspects(kernel, name)
        assert reply["found"] and f"{name} is /usr/local/bin/{name}" in reply["data"]["text/plain"]
        assert kernel.run("echo alive").stdout == "alive\n"
        assert kernel.run(f"pgrep -f {name} || echo none").stdout == "none\n"
    finally:
        waiter.unlink()
        kernel.run("cd /")


# ---- %help and the Help menu ---------------------------------------------------------------
def test_every_magic_documents_its_arguments_and_has_an_example(shared_kernel):
    magics.load_all()
    for magic in magics.all_magics():
        written = ("%%" if magic.cell else "%") + magic.name
        undocumented = [arg for arg, text in magic.arguments.argument_lines() if not text]
        assert not undocumented, f"{written}: arguments without a help text: {undocumented}"
        assert magic.example, f"{written} has no example"
    for name in sorted(magics.names()):
        text = shared_kernel.run(f"%help {name}").stdout
        for magic in magics.forms(name):
            assert magic.usage in text
            assert magic.example.strip().splitlines()[0].strip() in text, name
            for arg, _ in magic.arguments.argument_lines():
                assert arg in text, (name, arg)
        assert text.count("example:") == len(magics.forms(name))


def test_help_alone_lists_every_magic_with_one_line_each(shared_kernel):
    magics.load_all()
    result = shared_kernel.run("%help")
    assert result.status == "ok" and not result.errors and not result.stderr
    lines = result.stdout.splitlines()
    assert "%help NAME" in lines[0]
    listed = {line.split()[0]: line for line in lines[1:]}
    for magic in magics.all_magics():
        written = ("%%" if magic.cell else "%") + magic.name
        assert listed.pop(written).endswith(magic.summary), written
    assert not listed  # nothing but the magics, none on two lines
    assert result.record is None  # help changes nothing: no badge


def test_lsmagic_keeps_the_summaries_in_one_column(shared_kernel):
    magics.load_all()
    lines = shared_kernel.run("%lsmagic").stdout.splitlines()
    column = {line.index(m.summary) for m in magics.all_magics() for line in lines if line.endswith(m.summary)}
    assert len(column) == 1, column  # a long usage puts its summary on the next line, still aligned
    for magic in magics.all_magics():
        assert any(line.startswith(magic.usage) for line in lines), magic.usage


def test_help_links_point_at_the_readme_sections(shared_kernel):
    kernel = shared_kernel
    msg_id = kernel.kc.kernel_info()
    while True:
        msg = kernel.kc.shell_channel.get_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    links = msg["content"]["help_links"]
    assert links and all(link["text"].startswith("Workshop: ") for link in links)
    headings = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in README.read_text().splitlines() if line.startswith("#")
    }
    anchors = {link["url"].rpartition("#")[2] for link in links}
    assert anchors <= headings
    assert {"magics", "checks-and-grading", "known-limits"} <= anchors


@pytest.mark.parametrize("code", ["%ta", "%%ch", "%help ch", "%expect std"])
def test_completion_replies_name_their_types_for_jupyterlab(shared_kernel, code):
    reply = shared_kernel.complete(code)
    types = reply["metadata"]["_jupyter_types_experimental"]
    assert [t["text"] for t in types] == reply["matches"]
    assert all(t["start"] == reply["cursor_start"] and t["end"] == reply["cursor_end"] for t in types)


def test_tab_and_shift_tab_never_boot_a_vm(start_kernel):
    """Before a qemu target's first cell, magics still complete and explain
    themselves; shell words find nothing rather than start the machine."""
    name = f"ws-tab-{secrets.token_hex(3)}"
    kernel = start_kernel(f"qemu:{name}")
    assert completes(kernel, "%%ch") == (["%%check", "%%chroot"], 0, 4)
    assert completes(kernel, "%expect std")[0][:2] == ["stdout", "stderr"]
    assert completes(kernel, "ech") == ([], 0, 3)
    assert inspects(kernel, "%%chroot")["found"]
    assert inspects(kernel, "ls")["found"] is False
    running = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True).stdout
    assert running == ""


def test_tab_offers_the_micro_vms_made_on_this_machine(start_kernel, tmp_path):
    (tmp_path / "vms" / "lab").mkdir(parents=True)
    (tmp_path / "vms" / "lab" / "disk.qcow2").write_bytes(b"")
    (tmp_path / "vms" / "half-made").mkdir()  # no disk: not a VM yet
    (tmp_path / "vms" / "images").mkdir()  # the image cache
    kernel = start_kernel("local", WORKSHOP_DATA_DIR=str(tmp_path))
    assert completes(kernel, "%target qemu:") == (["qemu:", "qemu:lab"], 8, 13)
    assert completes(kernel, "%target qemu:l") == (["qemu:lab"], 8, 14)


def test_tab_offers_what_the_last_cell_made(kernel, tmp_path):
    """Files, directories, functions and the working directory a cell changed are
    offered after it, read from the target (SFTP over SSH), not remembered from before."""
    assert kernel.run(f"cd {tmp_path}").status == "ok"
    assert completes(kernel, "cat no")[0] == []
    assert kernel.run("touch notes.txt .notes; mkdir nested; ln -s nested linked; greet_ws() { echo hi; }").status == "ok"
    assert completes(kernel, "cat no")[0] == ["notes.txt"]
    assert completes(kernel, "cat .no")[0] == [".notes"]
    assert completes(kernel, "cd li")[0] == ["linked/"]  # a link to a directory is one
    assert "greet_ws" in kernel.tab_until("greet_", lambda m: "greet_ws" in m)
    assert completes(kernel, "ls greet_")[0] == []  # an argument: files only
    assert kernel.run("cd nested && touch inner && rm ../notes.txt").status == "ok"
    assert completes(kernel, "cat in")[0] == ["inner"]
    assert completes(kernel, "cat ../n")[0] == ["../nested/"]
    assert completes(kernel, f"cat {tmp_path}/ne")[0] == [f"{tmp_path}/nested/"]
    assert "$HOME" in kernel.tab_until("echo $HO", lambda m: "$HOME" in m)
    assert completes(kernel, "cat /nonexistent-ws/x")[0] == []
    kernel.run("cd /")
