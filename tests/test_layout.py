"""The package's shape: layers that point one way, no import circles, a thin
kernel, short functions.  These hold the layout the README's Layout section
describes; a change that breaks one should change the layout on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "workshop"

# Lowest first.  A module may import its own layer and the ones below it.
LAYERS = [
    ("base", {"errors", "text", "settings", "paths", "lock", "records", "arguments", "cell", "checks", "tasks",
              "grading", "quick_nbformat", "language", "display", "cut_output", "exchange"}),
    ("shell", {"shell"}),
    ("vm", {"vm", "engine"}),
    ("targets", {"targets"}),
    ("magics", {"magics"}),
    ("runners", {"session", "offers", "completion", "inspection", "runner", "kernel_cgroup", "batch", "store", "progress", "reports",
                 "run_reports", "feedback", "lms", "outputs", "assign", "importer", "doctor", "probe"}),
    ("front ends", {"kernel", "kernel_app", "highlight", "notebook_file", "console", "pacing", "coalesce", "cli", "pytest_plugin", "papermill_plugin",
                    "kernelspec_install", "__main__", "hub"}),
]
# Shell code written as Python strings: long because the shell program is.
LONG_TEMPLATES = {("shell/framing.py", "driver_script")}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (functions and
    TYPE_CHECKING blocks included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in mods and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def _unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "workshop"


def _layer(name: str) -> int:
    unit = _unit(name)
    for rank, (_, units) in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"{name} belongs to no layer: add its unit to LAYERS in {__file__}")


def test_every_module_has_a_layer_and_imports_only_downward():
    upward = []
    for name, imported in _graph().items():
        if name == "workshop":
            continue
        for other in imported:
            if other != "workshop" and _layer(other) > _layer(name):
                upward.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {other} ({LAYERS[_layer(other)][0]})")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_no_import_circles_between_units():
    graph = _graph()
    # a package and its own submodules may lean on each other (registration);
    # circles across units may not
    units: dict[str, set[str]] = {}
    for name, imported in graph.items():
        units.setdefault(_unit(name), set()).update(_unit(o) for o in imported if _unit(o) != _unit(name))
    units.pop("workshop", None)
    for deps in units.values():
        deps.discard("workshop")
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(unit: str, path: list[str]) -> None:
        if state.get(unit) == 1:
            cycles.append(path[path.index(unit):] + [unit])
            return
        if state.get(unit) == 2:
            return
        state[unit] = 1
        for dep in sorted(units.get(unit, ())):
            visit(dep, path + [unit])
        state[unit] = 2

    for unit in sorted(units):
        visit(unit, [])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_nothing_imports_the_kernel():
    users = sorted(name for name, imported in _graph().items() if "workshop.kernel" in imported)
    assert users == [], f"the kernel is a front end; these import it: {users}"


def test_the_kernel_is_a_thin_adapter():
    lines = len((PACKAGE / "kernel.py").read_text().splitlines())
    assert lines <= 300, f"workshop/kernel.py has {lines} lines; cell running belongs in session.py"


def test_every_grading_module_does_one_job_in_under_400_lines():
    """The grader is split by job (workshop/grading/); a module that grows past 400 lines is doing two."""
    long = {path.name: n for path in sorted((PACKAGE / "grading").glob("*.py"))
            if (n := len(path.read_text().splitlines())) >= 400}
    assert not long, f"grading modules of 400 lines or more, to split by job: {long}"


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (where, node.name) not in LONG_TEMPLATES:
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def test_the_layer_test_sees_an_upward_import(tmp_path):
    """The checker itself: an upward import in a module is found."""
    mods = {"workshop.shell.x": tmp_path / "x.py", "workshop.kernel": PACKAGE / "kernel.py"}
    mods["workshop.shell.x"].write_text("from ..kernel import WorkshopKernel\n")
    found = _imports("workshop.shell.x", mods["workshop.shell.x"], mods)
    assert found == {"workshop.kernel"}
    assert _layer("workshop.kernel") > _layer("workshop.shell.x")


# ---- target kinds are asked what they can do, never what they are called --------------
TARGETS = PACKAGE / "targets"
KINDS = {p.stem for p in TARGETS.glob("*.py") if not p.stem.startswith("_")} | {"ssh-config"}
KIND_PREFIXES = tuple(f"{kind}:" for kind in KINDS) + ("ssh://",)


def _names_a_kind(node: ast.AST) -> bool:
    """A string that is a target kind (``"qemu"``) or a spec's prefix (``"qemu:"``), or a tuple holding one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in KINDS or node.value.startswith(KIND_PREFIXES)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_names_a_kind(e) for e in node.elts)


def _about_a_target(node: ast.AST) -> bool:
    """An expression about a target or its spec: a name or attribute that says target, spec or kind."""
    words = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    words += [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
    return any(w in ("kind", "spec", "where") or "target" in w for w in words)


def kind_tests(source: str) -> list[int]:
    """Lines of ``source`` that test a target's kind by its name: a comparison with a kind's name,
    ``.startswith("qemu:")``, ``.partition(":")`` of a spec, an import of one kind's module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_names_a_kind(s) for s in sides) and any(_about_a_target(s) for s in sides):
                found.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _about_a_target(node.func.value):
            method, args = node.func.attr, node.args
            if method in ("startswith", "removeprefix") and args and _names_a_kind(args[0]):
                found.append(node.lineno)
            elif method == "partition" and args and isinstance(args[0], ast.Constant) and args[0].value == ":" and (
                    any(_names_a_kind(n) for n in ast.walk(node.func.value)) or "target" in ast.unparse(node.func.value)):
                found.append(node.lineno)  # a target spec's kind, parsed again (an executor's spec is not one)
        elif isinstance(node, ast.ImportFrom) and any(
                f"targets.{kind}" in f"{node.module}.{a.name}" or (node.module or "").endswith(f"targets.{kind}")
                for kind in KINDS for a in node.names):
            found.append(node.lineno)
    return found


def test_no_module_outside_targets_tests_a_target_kind_by_name():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if TARGETS in path.parents:
            continue
        found += [f"{path.relative_to(PACKAGE)}:{line}" for line in kind_tests(path.read_text())]
    assert not found, ("these test a target's kind by its name; ask the target (workshop/targets) instead:\n"
                       + "\n".join(found))


def test_the_kind_test_sees_each_way_of_asking_a_kind():
    """The checker itself: what batch.py, feedback.py, doctor.py and magics/target.py once did is found."""
    asked = [
        'if target.kind == "qemu": pass',
        'contain = target == "local"',
        'x = spec in ("", "local")',
        'if target.startswith("qemu:"): pass',
        'kind = (spec or "local").partition(":")[0]',
        'kind = target.partition(":")[0]',
        'from .targets.qemu import fresh_qemu',
        'note = target.spec.removeprefix("qemu:")',
    ]
    assert [bool(kind_tests(code)) for code in asked] == [True] * len(asked)
    assert kind_tests('if check.kind == "expect": pass\nparse_target("local")\nmode = "local" if x else y\n'
                      'kind, _, address = spec.partition(":")') == []
