"""The imaging workflow's errors, each one of the typed kinds of
:mod:`ghimaging.exceptions`, so the API and the pages map them in one place
(409 for a state that forbids the step, 422 for bad input, 503 for a
worklist folder that refused a file)."""

from __future__ import annotations

from ..exceptions import Conflict, DomainError, Invalid, UpstreamFailure


class WorkflowError(DomainError):
    """A change the rules do not allow; the message is safe to show."""


class TransitionError(WorkflowError, Conflict):
    """The request is not in a state that allows this action (HTTP 409,
    error ``illegal_transition``); ``state`` is the state it is in."""

    code = "illegal_transition"

    def __init__(self, message: str, *, state: str = "") -> None:
        super().__init__(message)
        self.state = state


class ValidationError(WorkflowError, Invalid):
    """Bad input for a change (HTTP 422); ``errors`` maps fields to messages."""

    def __init__(self, errors: dict[str, str], *, code: str | None = None) -> None:
        Invalid.__init__(self, "; ".join(errors.values()), fields=errors, code=code)

    @property
    def errors(self) -> dict[str, str]:
        return self.fields


class WorklistRefused(ValidationError):
    """The request cannot become (or stay) ``requested`` because its worklist
    file cannot be written: a value the template's character set cannot
    hold (``code`` "worklist_charset", with ``characters`` and ``template``),
    or a template that does not render ("worklist_template"). Nothing was
    changed."""

    def __init__(self, message: str, *, code: str, characters: list[str] | None = None,
                 template: str = "", accession_number: str = "") -> None:
        super().__init__({"worklist": message}, code=code)
        self.message = message
        self.characters, self.template = characters or [], template
        self.accession_number = accession_number


class WorklistUnwritable(WorkflowError, UpstreamFailure):
    """The worklist folder refused the file (disk full, permissions): the
    change was not made (HTTP 503, error ``worklist_unwritable``)."""

    code = "worklist_unwritable"

    def __init__(self, message: str) -> None:
        UpstreamFailure.__init__(self, message)
