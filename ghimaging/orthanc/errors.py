"""The ways a call to Orthanc can fail, as the typed errors of
:mod:`ghimaging.exceptions`: Orthanc not answering, refusing the password or
answering nonsense is an :class:`~ghimaging.exceptions.UpstreamFailure`
(a timeout with ``timeout=True``, so the API answers 504, else 502); a
resource Orthanc does not (or no longer) hold is a
:class:`~ghimaging.exceptions.NotFound` (404). ``str()`` of each is a
message fit for a person."""

from __future__ import annotations

from .. import exceptions


class OrthancError(exceptions.UpstreamFailure):
    """Base class of every error a call to Orthanc raises."""

    code = "orthanc"

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message, timeout=timeout)


class Unreachable(OrthancError):
    """Connection refused, DNS failure, TLS failure or timeout."""

    code = "orthanc_unreachable"


class TimedOut(Unreachable):
    """Orthanc did not answer, or not completely, within the time allowed
    (a read timeout or the call's deadline)."""

    code = "orthanc_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, timeout=True)


class Unauthorized(OrthancError):
    """401/403: wrong username or password."""

    code = "orthanc_unauthorized"


class NotFound(OrthancError, exceptions.NotFound):
    """404: the resource is not (or no longer) in Orthanc. Also a
    :class:`ghimaging.exceptions.NotFound`, so an uncaught one answers 404."""

    code = "not_found"


class BadAnswer(OrthancError):
    """An answer that is not what Orthanc gives: not JSON, 5xx, wrong shape.
    ``status`` is the HTTP status when Orthanc answered with an error (415:
    it cannot decode the image), else None."""

    code = "orthanc_bad_answer"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def refused(status: int, method: str, path: str, body: bytes) -> OrthancError:
    """The error for an answer of Orthanc with status ``status`` (400 or
    more) to ``method path``; ``body`` (may be empty) for its details."""
    from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

    if status in (401, 403):
        return Unauthorized(_("Orthanc refused the username or password."))
    if status == 404:
        return NotFound(_("%(path)s not found in Orthanc.", path=path))
    detail = ""
    if body:
        import json

        try:
            parsed = json.loads(body)
            detail = (parsed.get("Details") or parsed.get("Message") or "") if isinstance(parsed, dict) else ""
        except ValueError:
            detail = body[:200].decode("utf-8", "replace")
    return BadAnswer(_("Orthanc answered %(status)s to %(method)s %(path)s: %(detail)s", status=status,
                       method=method, path=path, detail=detail) if detail else
                     _("Orthanc answered %(status)s to %(method)s %(path)s.", status=status, method=method,
                       path=path), status=status)
