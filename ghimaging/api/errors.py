from __future__ import annotations

from typing import Any

from flask import jsonify


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra

    def response(self):
        return jsonify(error=self.error, message=self.message, **self.extra), self.status


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def invalid(fields: dict[str, str]) -> ApiError:
    return ApiError(422, "validation", "Some fields are not valid.", fields=fields)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found.")
