"""The grader, a module per job (each pure: notebook data in, plain data out):

- :mod:`.notebook`: reading an untrusted notebook's JSON safely
- :mod:`.reference`: the reference model (checks, points, tasks, locked and hidden cells)
- :mod:`.grade`: grading one submission against it, and the flags that says why
- :mod:`.copies`: finding copies of one run across a class
- :mod:`.rerun`: preparing a submission for a rerun (the reference's checks put back)
- :mod:`.results`: the wire formats of grade results, check entries and flags
- :mod:`.paths`: naming submissions and the paths reports show

Grading many submissions, reruns and executors live in :mod:`workshop.batch`; what
is written from the results, in :mod:`workshop.outputs`.  The names below stay
importable from ``workshop.grading``; they are loaded on first use, so that a caller
that only reads a notebook (``from workshop.grading.notebook import ...``) loads
nothing else.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "copies": ("flag_shared_runs", "run_evidence", "similar_pairs"),
    "grade": ("grade_submission", "task_answers"),
    "notebook": ("check_notebook", "read_notebook_json"),
    "paths": ("display_path", "expand_paths", "student_names"),
    "reference": ("RefCell", "RefCheck", "RefTask", "Reference", "load_reference", "reference_of", "student_code"),
    "rerun": ("restore_reference", "target_changes"),
    "results": ("NEEDS_RERUN", "CheckEntry", "Flag", "GradeResult", "Report"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'workshop.grading' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_HOME_OF)
