"""papermill support: parameters as shell assignments, and an engine that sends cell ids.

papermill loads its ``papermill.engine`` entry points when it starts; loading
this module registers :class:`WorkshopTranslator` for the ``workshop`` kernel,
so ``papermill NB OUT -p name value`` writes quoted assignments a bash or POSIX
shell reads, and ``papermill --help-notebook NB`` lists the parameters cell's
variables.  ``papermill --engine workshop`` also sends each cell's id with its
execute request, as JupyterLab does, so that records name their cells.
"""

from __future__ import annotations

import json
import logging
import re
import shlex

from papermill.engines import NBClientEngine
from papermill.exceptions import PapermillException
from papermill.models import Parameter
from papermill.translators import Translator, papermill_translators
from papermill.utils import merge_kwargs, remove_args

KERNEL = "workshop"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# NAME=VALUE, then an optional "# help" comment
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


class WorkshopTranslator(Translator):
    """Papermill parameters as shell variables: every value is quoted as data."""

    @classmethod
    def translate_str(cls, val) -> str:
        return shlex.quote(str(val))

    translate_escaped_str = translate_str

    @classmethod
    def translate_none(cls, val) -> str:
        return "''"

    @classmethod
    def translate_bool(cls, val) -> str:
        return "true" if val else "false"

    @classmethod
    def translate_float(cls, val) -> str:
        return shlex.quote(repr(val))  # nan, inf: text for the shell either way

    @classmethod
    def translate_dict(cls, val) -> str:
        return shlex.quote(json.dumps(val))  # JSON text: `jq` reads it

    @classmethod
    def translate_list(cls, val) -> str:
        return "(" + " ".join(cls.translate(v) for v in val) + ")"  # a bash array

    @classmethod
    def comment(cls, cmt_str: str) -> str:
        return f"# {cmt_str}".strip()

    @classmethod
    def assign(cls, name: str, str_val: str) -> str:
        if not _NAME.match(name):
            raise PapermillException(f"the parameter {name!r} is not a shell variable name (letters, digits and _, "
                                     "not starting with a digit); rename it")
        return f"{name}={str_val}"

    @classmethod
    def inspect(cls, parameters_cell) -> list[Parameter]:
        """The variables the parameters cell assigns, with their defaults and ``# help`` comments."""
        found = []
        for line in str(parameters_cell.source).splitlines():
            match = _ASSIGNMENT.match(line)
            if not match:
                continue
            value, help_text = _value_and_comment(match.group("value"))
            found.append(Parameter(match.group("name"), _type_of(value), value, help_text))
        return found


def _value_and_comment(text: str) -> tuple[str, str]:
    """(the value as written, its ``# comment``) of the right side of an assignment: a ``#``
    outside quotes after a space starts the comment, as in the shell."""
    quote, escaped = None, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and i > 0 and text[i - 1].isspace():
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


def _type_of(value: str) -> str:
    if value.startswith("("):
        return "list"
    if value in ("true", "false"):
        return "bool"
    try:
        plain = shlex.split(value)
    except ValueError:
        return "None"
    text = plain[0] if len(plain) == 1 else value
    for kind, parse in (("int", int), ("float", float)):
        try:
            parse(text)
            return kind
        except ValueError:
            pass
    return "str" if value else "NoneType"


class WorkshopEngine(NBClientEngine):
    """papermill's nbclient engine, sending cell ids as JupyterLab does (``--engine workshop``)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, **kwargs):
        from papermill.clientwrap import PapermillNotebookClient

        from .runner import CellMetadata

        kwargs = remove_args(["input_path"], **kwargs)
        final = merge_kwargs(remove_args(["timeout", "startup_timeout"], **kwargs),
                             timeout=execution_timeout or kwargs.get("timeout"), startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logging.getLogger("papermill"),
                             log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
        client = PapermillNotebookClient(nb_man, **final)
        metadata = CellMetadata()
        client.on_cell_execute = lambda cell, cell_index: metadata.before(client, cell)
        return client.execute()


papermill_translators.register(KERNEL, WorkshopTranslator)
