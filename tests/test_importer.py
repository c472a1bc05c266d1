"""workshop import: docable-style Markdown to a notebook with checks, and back through workshop run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from harness import clean_env

from workshop.checks import cell_checks
from workshop.importer import LiteralError, convert, file_mode, parse_attributes, translate_failed_when

DATA = Path(__file__).parent / "data"


# ---- the attribute block ---------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("{type: 'command'}", {"type": "command"}),
    ("{type:'command', failed_when: \"stdout.includes('goodbye')\"}",
     {"type": "command", "failed_when": "stdout.includes('goodbye')"}),
    ('{"type": "file", \'path\': "a b.sh", permission: \'+x\',}', {"type": "file", "path": "a b.sh", "permission": "+x"}),
    ("{ type : 'command' , stream : true , block : 2 , x: null }", {"type": "command", "stream": True, "block": 2, "x": None}),
    (r"{failed_when: 'stdout.includes(\'it\\\'s\')'}", {"failed_when": "stdout.includes('it\\'s')"}),
    ("{msg: 'caf\\u00e9 👍', list: ['a', \"b\"], nested: {a: 1}}", {"msg": "café 👍", "list": ["a", "b"], "nested": {"a": 1}}),
    ("{}", {}),
])
def test_parse_attributes(text, expected):
    assert parse_attributes(text) == expected


@pytest.mark.parametrize("text", ["{type: 'command'", "{type 'command'}", "{type: 'command}", "type: 'x'",
                                  "{a: 1} extra", "{a: 1 b: 2}"])
def test_parse_attributes_rejects_broken_blocks(text):
    with pytest.raises(LiteralError):
        parse_attributes(text)


# ---- failed_when ----------------------------------------------------------------------
@pytest.mark.parametrize("expr, expects", [
    ("exitCode != 0", ["%expect exit 0"]),
    ("exitCode !== 2", ["%expect exit 2"]),
    ("(exitCode != 0)", ["%expect exit 0"]),
    ("!stdout.includes('hello world')", ["%expect stdout-contains hello world"]),
    ('!stderr.includes("warning")', ["%expect stderr-contains warning"]),
    ("stdout.indexOf('ok') == -1", ["%expect stdout-contains ok"]),
    ("!stdout.match(/^v\\d+/i)", ["%expect stdout /^v\\d+/i"]),
    ("!/done$/.test(stdout)", ["%expect stdout /done$/"]),
    ("stderr.length > 0", ["%expect stderr empty"]),
    ("stderr != ''", ["%expect stderr empty"]),
    ("exitCode != 0 || !stdout.includes('a || b')", ["%expect exit 0", "%expect stdout-contains a || b"]),
    ("!stdout.includes('  padded ')", ["%expect stdout /\\ \\ padded\\ /"]),
])
def test_failed_when_maps(expr, expects):
    assert translate_failed_when(expr) == (expects, [])


@pytest.mark.parametrize("expr", [
    "exitCode == 0 && stdout.includes('x')",
    "stdout.includes('error')",  # fails when present: no %expect says "does not contain"
    "exitCode > 1",
    "!stdout.match(/(?<x>a)\\k<x>/)",  # a JS regex Python cannot compile
])
def test_failed_when_that_does_not_map_is_reported(expr):
    expects, unmapped = translate_failed_when(expr)
    assert expects == [] and unmapped


def test_file_modes():
    assert file_mode("+x") == "755"
    assert file_mode("u+x") == "755"
    assert file_mode("600") == "600"
    assert file_mode("0644") == "0644"
    assert file_mode("u=rwx") is None


# ---- whole documents --------------------------------------------------------------------
def test_convert_workshop_fixture():
    converted = convert((DATA / "docable-workshop.md").read_text(), source="docable-workshop.md")
    nb = converted.notebook
    assert converted.notes == []
    assert nb.metadata.kernelspec.name == "workshop"
    assert nb.metadata.workshop.target == "local"
    ids = [c.id for c in nb.cells]
    assert len(ids) == len(set(ids))
    assert convert((DATA / "docable-workshop.md").read_text()).notebook.cells[3].id == nb.cells[3].id  # stable
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0] == '%%file hello.sh --mode 755\n#!/bin/sh\necho "hello, $1"\n'
    assert code[1] == "%expect exit 0\n./hello.sh world"
    assert code[2].startswith("%expect stdout-contains hello, world\n")
    assert code[3].startswith("%expect exit 0\n%expect stdout /^HELLO, [A-Z]+$/\n")
    assert code[5].startswith("%expect exit 0\n%expect stderr empty\n")  # docable's default rule
    assert code[7].startswith("%%file 'my notes.txt' --mode 600\n")
    # Prose, plain fences and the setup comment stay Markdown.
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "# Shell basics, docable style" in prose and 'echo "this is only shown"' in prose
    assert "targets:" in prose
    # Every %expect the importer wrote is one the kernel can parse.
    for source in code:
        cell_checks(source)


def test_unmapped_things_are_visible():
    converted = convert((DATA / "docable-unmapped.md").read_text())
    cells = converted.notebook.cells
    text = "\n".join(c.source for c in cells)
    assert len(converted.notes) == 6
    first = next(c for c in cells if c.cell_type == "code")
    assert first.source.startswith("# Note (import): failed_when")  # no %expect for it, and it says so
    assert "privileged" in first.source
    assert "variables='foo'" in text
    assert "cell type 'terminal'" in text
    assert "printf '%s' 'it'\\''s appended\n' >> 'log.txt'" in text
    assert "permission 'u=rwx'" in text
    broken = next(c for c in cells if "could not be read" in c.source)
    assert broken.cell_type == "markdown" and "echo broken attributes" in broken.source


@pytest.mark.slow
def test_cli_import_then_run_round_trip(tmp_path, installed_kernelspec):
    out = tmp_path / "imported.ipynb"
    done = subprocess.run([sys.executable, "-m", "workshop", "import", str(DATA / "docable-workshop.md"), "-o", str(out)],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    nb = nbformat.read(str(out), as_version=4)
    nbformat.validate(nb)
    ran = subprocess.run([sys.executable, "-m", "workshop", "run", str(out), "--out", str(tmp_path / "ran")],
                         capture_output=True, text=True, env=clean_env(), timeout=300, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "10/10 checks passed" in ran.stderr
    assert not (tmp_path / "hello.sh").exists()  # the last cell removed what the first wrote


def test_cli_import_reports_notes_and_missing_files(tmp_path):
    done = subprocess.run([sys.executable, "-m", "workshop", "import", str(DATA / "docable-unmapped.md"),
                           "-o", str(tmp_path / "u.ipynb")], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("note: ") == 6
    missing = subprocess.run([sys.executable, "-m", "workshop", "import", str(tmp_path / "nope.md")],
                             capture_output=True, text=True, env=clean_env(), timeout=60)
    assert missing.returncode != 0 and "nope.md" in missing.stderr
