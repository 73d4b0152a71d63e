"""The API's one mapping from errors to HTTP answers.

Services raise the typed errors of :mod:`ghimaging.exceptions`; this module
turns them into JSON (``error`` a stable word, ``message`` a sentence,
``fields`` for invalid input). :class:`ApiError` stays for what only the
API can say (a bad token, a malformed body).
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from ..exceptions import Conflict, DomainError, Invalid, NotFound, UpstreamFailure


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra

    def response(self) -> tuple[Response, int]:
        return jsonify(error=self.error, message=self.message, **self.extra), self.status


def from_domain(exc: DomainError) -> ApiError:
    """404 not found, 409 conflict, 422 invalid (with ``fields``), 502 an
    upstream failure or 504 when it timed out; the error's ``code`` is the
    JSON ``error``."""
    if isinstance(exc, NotFound):
        return ApiError(404, exc.code, exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, exc.code, exc.message)
    if isinstance(exc, Invalid):
        return ApiError(422, exc.code, exc.message, fields=exc.fields)
    if isinstance(exc, UpstreamFailure):
        return ApiError(504 if exc.timeout else 502, exc.code, exc.message)
    return ApiError(400, exc.code, exc.message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def invalid(fields: dict[str, str]) -> ApiError:
    return ApiError(422, "validation", "Some fields are not valid.", fields=fields)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found.")
