"""What each entry point imports: the heavy libraries load only where they are used.

`workshop COMMAND --help` must answer at once (bench: -X importtime, BENCHMARKS.md),
and a kernel that JupyterLab starts for a local target must not pay for SSH,
notebook validation or the debugger.  Asserted on module sets, never on timings.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# Each costs tens to thousands of milliseconds to import.
HEAVY = {"nbformat", "jsonschema", "jinja2", "dask", "distributed", "nbclient", "jupyter_client", "zmq",
         "paramiko", "ipykernel", "IPython", "debugpy", "rich", "tornado", "fastjsonschema"}


def loaded_after(code: str) -> set[str]:
    """The top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


COMMANDS = [[], ["run"], ["grade"], ["assign"], ["check"], ["doctor"], ["import"], ["kernel"], ["kernel", "install"],
            ["vm"], ["vm", "up"], ["vm", "list"], ["release"], ["fetch"], ["submit"], ["collect"], ["exchange"],
            ["exchange", "start"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "workshop")
def test_help_of_every_command_loads_no_heavy_library(command):
    code = ("from workshop.cli import main\n"
            f"try:\n    main({[*command, '--help']!r}, prog_name='workshop')\nexcept SystemExit:\n    pass")
    assert loaded_after(code) & HEAVY == set()


def test_the_cli_module_loads_no_heavy_library():
    assert loaded_after("import workshop.cli") & HEAVY == set()


def test_grading_from_records_needs_no_notebook_library():
    """`workshop grade` without --rerun reads notebooks as JSON: no nbformat, no kernel client."""
    found = loaded_after("import workshop.batch, workshop.grading, workshop.reports, workshop.lms, workshop.feedback")
    assert found & {"nbformat", "jsonschema", "nbclient", "jupyter_client", "zmq", "paramiko", "dask"} == set()


def test_the_kernel_for_a_local_target_loads_no_ssh_no_nbformat_no_debugger():
    found = loaded_after("import workshop.kernel")
    assert found & {"paramiko", "nbformat", "jsonschema", "debugpy", "nbclient"} == set()


@pytest.mark.parametrize("module", ["workshop.runner", "workshop.assign", "workshop.importer"])
def test_notebook_commands_skip_the_iri_grammar_jsonschema_would_compile(module):
    """`workshop run`, `assign` and `import` need nbformat, hence jsonschema, whose IRI format
    checks would compile rfc3987-syntax's grammar (seconds) when that package is installed."""
    found = loaded_after(f"import {module}")
    assert "nbformat" in found and "jsonschema" in found
    assert "rfc3987_syntax" not in found and "lark" not in found
