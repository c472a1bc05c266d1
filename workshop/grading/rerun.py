"""Preparing a submission's rerun: the ways it asks to run elsewhere (refused), and the
reference's checks, locked and hidden cells put back into it."""

from __future__ import annotations

from ..cell import cell_name
from ..checks import is_check_line
from ..records import multiline_text
from .reference import Reference, target_lines
from .results import Flag, add_flag


def target_changes(ref: Reference, nb: dict, target: str) -> list[Flag]:
    """Flags for the ways a submission asks to run elsewhere than ``target``
    (``%target SPEC`` in a cell, ``metadata.workshop.target``), beyond what the
    reference itself says.  A rerun refuses them all; the flags say who tried."""
    flags: list[Flag] = []
    fixed = f"the target is fixed for this run ({target})"
    spec = (nb.get("metadata", {}).get("workshop") or {}).get("target")
    if spec and spec != target and spec not in ref.targets:
        add_flag(flags, "target-change-refused", None, f"metadata.workshop.target asks for {str(spec)[:100]!r}; "
                                                   f"ignored: {fixed}")
    names = {c.id: c.name for c in ref.cells}
    ordinal = 0
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        ordinal += 1
        for line in target_lines(multiline_text(cell.get("source"))):
            if line not in ref.targets:
                add_flag(flags, "target-change-refused", names.get(cell.get("id")) or cell_name(ordinal, cell.get("id")),
                      f"`{line[:100]}` in the cell was refused: {fixed}")
    return flags


# ---- restoring the reference's checks in a submission ------------------------
def restore_reference(ref: Reference, nb: dict) -> list[int]:
    """Put the reference's checks (visible and hidden), its locked cells and its
    hidden cells back into a submission; the student's own code stays.  Returns
    the indexes of the cells that are now wholly the reference's (locked and
    hidden cells, and cells whose code is the reference's as written): a rerun
    vouches for those and runs the others isolated."""
    _put_back_hidden_cells(ref, nb)
    by_id = {cell.get("id"): cell for cell in nb["cells"]}
    vouched = set()
    for ref_cell in ref.cells:
        cell = by_id.get(ref_cell.id)
        if cell is None:
            continue
        if ref_cell.hidden:
            vouched.add(id(cell))
            continue
        if ref_cell.locked:
            cell["source"] = ref_cell.source
            vouched.add(id(cell))
            continue
        ref_lines = ref_cell.source.split("\n")
        ref_expects = [line for line in ref_lines if line.strip().startswith("%expect")]
        ref_checks = next((ref_lines[i:] for i, line in enumerate(ref_lines) if is_check_line(line)), [])
        lines = multiline_text(cell.get("source")).split("\n")
        for i, line in enumerate(lines):
            if is_check_line(line):
                lines = lines[:i]
                break
        lines = [line for line in lines if not line.strip().startswith("%expect")]
        cell["source"] = "\n".join(ref_expects + lines + ref_checks)
        if cell["source"] == ref_cell.source:  # the instructor's code, as written
            vouched.add(id(cell))
    return [i for i, cell in enumerate(nb["cells"]) if id(cell) in vouched]


def _put_back_hidden_cells(ref: Reference, nb: dict) -> None:
    """Insert the reference's hidden cells where the reference has them (after the
    nearest earlier cell the submission has); a cell of the submission that
    claims a hidden cell's id is replaced."""
    hidden = {c.id: c for c in ref.cells if c.hidden}
    if not hidden:
        return
    nb["cells"] = [cell for cell in nb["cells"] if cell.get("id") not in hidden]
    for k, cell_id in enumerate(ref.order):
        if cell_id not in hidden:
            continue
        ids = [cell.get("id") for cell in nb["cells"]]
        before = next((ids.index(i) for i in reversed(ref.order[:k]) if i in ids), -1)
        nb["cells"].insert(before + 1, {
            "cell_type": "code", "id": cell_id, "execution_count": None, "outputs": [],
            "metadata": {"workshop": {"hidden": True, "locked": True}}, "source": hidden[cell_id].source})


__all__ = ["restore_reference", "target_changes"]
