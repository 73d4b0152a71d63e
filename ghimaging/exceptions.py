"""The typed errors every service raises, whatever the caller.

A service says *what* went wrong; the caller decides how to tell it. The API
maps these to HTTP in one place (:mod:`ghimaging.api.errors`), the pages in
one place (:mod:`ghimaging.errors`), the CLI prints the message. No caller
reads the message text to choose what to do: a case that needs its own
handling gets its own ``code`` (``Conflict("…", code="duplicate_label")``)
or its own subclass.

Each area keeps its own named subclass (``UserError``, ``WorkflowError``…)
where the views catch it, so the area's vocabulary stays and the kind is
still one of these four.
"""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """Base of the four kinds below; ``message`` is a sentence for people,
    ``code`` a stable machine-readable word for the API."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    code = "not_found"


class Conflict(DomainError):
    """The request is well formed but the current state forbids it: a name
    already taken, a request no longer in a state that allows the step, a
    link that would cross patients without confirmation."""

    code = "conflict"


class Invalid(DomainError):
    """Input that cannot be accepted; ``fields`` maps a field name to what
    is wrong with it (empty when the problem is not one field's)."""

    code = "validation"

    def __init__(self, message: str | Mapping[str, str] = "", *, fields: Mapping[str, str] | None = None,
                 code: str | None = None) -> None:
        if not isinstance(message, str):  # Invalid({"name": "…"})
            fields, message = message, ""
        self.fields: dict[str, str] = dict(fields or {})
        if not message:
            from flask_babel import gettext  # type: ignore[import-untyped]  # Flask-Babel ships no types

            message = "; ".join(self.fields.values()) if len(self.fields) == 1 else gettext("Some fields are not valid.")
        super().__init__(message, code=code)


class UpstreamFailure(DomainError):
    """A system we depend on (Orthanc, GNU Health, the disk) failed or did
    not answer in time; ``timeout`` tells the two apart for the API (504 vs
    502)."""

    code = "upstream"

    def __init__(self, message: str, *, code: str | None = None, timeout: bool = False) -> None:
        super().__init__(message, code=code)
        self.timeout = timeout
