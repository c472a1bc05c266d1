"""Import this before nbformat (or nbclient): nbformat without 1-3 s of jsonschema's IRI checks.

jsonschema registers format checks for "iri" and "iri-reference" when the
rfc3987-syntax package is installed (jupyter_server's dependencies bring it),
and that package compiles a grammar when it is imported: most of what
``import nbformat`` cost `workshop run`.  No notebook schema uses those formats,
so the package is hidden while jsonschema is first imported, then given back
to whoever imports it by name.
"""

from __future__ import annotations

import sys

_HIDDEN = "rfc3987_syntax"

if "jsonschema" not in sys.modules and _HIDDEN not in sys.modules:
    sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # import fails; jsonschema skips those checks
    try:
        import jsonschema  # noqa: F401
    finally:
        del sys.modules[_HIDDEN]
