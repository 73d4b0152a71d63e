"""Which names a worklist template uses that no request provides (issue 13):
the check of :mod:`.checker` records them all, and the editor lists them.

Such a template is refused, not saved after a warning: templates render
strictly (an unknown name is an error, never an empty value), so it would
fail every submit that reaches the name."""

from __future__ import annotations

import ast

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from .sandbox import SandboxError
from .values import exposed_names, related_model, request_model


class UnknownVariables(SandboxError):
    """Every unknown name of a template (``PatientNmae``, ``patient.nmae``,
    ``my.patient.name``), as written, with the first one's line."""

    def __init__(self, names: list[str], line: int | None = None) -> None:
        super().__init__(_("Unknown variables: %(names)s", names=", ".join(names)), line)
        self.names = names


def chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None when it starts with something
    other than a name (a call, a literal, an item)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def walk_my(parts: list[str]) -> tuple[str, int]:
    """``my.a.b...`` followed through the request's models: ("unknown", i)
    when ``parts[i]`` is not a field of the record it is read on
    (``my.patient.name``: ``name`` is the test's), ("hidden", i) when it is
    there but never shown to templates (``query``, ``password_hash``),
    ("value", i) when ``parts[i:]`` are read on a value (a column, a list:
    string methods and date fields, checked as usual), ("ok", len)."""
    model: type | None = request_model()
    for i, attr in enumerate(parts[1:], start=1):
        if model is None:
            return "value", i
        if attr not in exposed_names(model):
            return ("hidden" if hasattr(model, attr) else "unknown"), i
        model = related_model(model, attr)
    return "ok", len(parts)
