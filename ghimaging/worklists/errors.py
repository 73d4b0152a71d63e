"""The error of a worklist template that does not compile, is not allowed
(:mod:`.sandbox`) or does not render: input that cannot be accepted
(:class:`~ghimaging.exceptions.Invalid`). It stays a ``ValueError`` too, for
the callers that catch every encoding problem of a worklist file at once."""

from __future__ import annotations

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..exceptions import Invalid


class RenderError(Invalid, ValueError):
    """A template that does not compile or render; ``line`` when known."""

    code = "worklist_template"

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return str(_("line %(line)s: %(message)s", line=self.line, message=self.message)) if self.line else self.message
