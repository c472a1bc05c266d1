"""What the shipped notebooks' code cells must not depend on: the depth of the
process tree they run in.  Without a terminal, `ps` cuts its lines at 80
columns; a forest (`f`) indents each level, so under a deep tree (a kernel in a
fresh root in a CI job) the command column is cut off and a check reading it
fails.  `ww` lifts the cut."""

from __future__ import annotations

import json
import re
from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PS_FOREST = re.compile(r"(?<![\w-])ps\s+([a-zA-Z]*f[a-zA-Z]*)\b")  # BSD letters: f is a forest (-f is not)


def test_every_ps_forest_in_a_code_cell_is_uncut():
    cut = []
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            for letters in PS_FOREST.findall("".join(cell["source"])):
                if "ww" not in letters:
                    cut.append(f"{path.name} cell {cell.get('id')}: ps {letters}")
    assert not cut, cut


def test_the_rule_sees_a_cut_forest():
    assert PS_FOREST.findall("x=1; ps axfo pid,command | grep y") == ["axfo"]
    assert PS_FOREST.findall("ps axfwwo pid,command") == ["axfwwo"]
    assert PS_FOREST.findall("ps -ef; ps aux") == []
