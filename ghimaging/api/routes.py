"""JSON API v1: the same services as the pages, bearer-token authentication.

This module holds what every endpoint shares (the blueprint, the token
check, the permission decorator, the JSON body's bounds, paging, the error
answers); the endpoints are in ``patients``, ``catalog``, ``requests``,
``orthanc`` and ``servers``. A view parses the body, calls the service,
commits once and answers; the services' typed errors become HTTP answers in
:func:`_domain_error` only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select
from werkzeug.exceptions import RequestEntityTooLarge

from ..auth import gate
from ..auth import service as auth
from ..exceptions import DomainError
from ..extensions import db
from ..imaging.errors import TransitionError, WorklistRefused, WorklistUnwritable
from ..models import User
from ..permissions import Action
from .errors import ApiError, bad_request, from_domain, invalid
from .openapi import document

bp = Blueprint("api", __name__, url_prefix="/api/v1")
F = TypeVar("F", bound=Callable[..., Any])
MAX_PAGE = 200


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int]:
    return exc.response()


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> tuple[Response, int]:
    """The mapping of :mod:`.errors`, with what some errors say beyond it:
    a refused transition names the state the request is in; a refused
    worklist file the characters and the template; a worklist folder that
    refused the file is 503 (the server's disk, not an upstream system)."""
    db.session.rollback()
    answer = from_domain(exc)
    if isinstance(exc, TransitionError):
        answer.extra["state"] = exc.state
    elif isinstance(exc, WorklistRefused):
        answer.extra.update(characters=exc.characters, template=exc.template or None)
    elif isinstance(exc, WorklistUnwritable):
        answer.status = 503
    return answer.response()


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
    limit, _ = json_limits()
    return ApiError(413, "too_large", f"The body is too large; the API takes at most {limit:,} bytes.").response()


@bp.before_request
def _bound_body() -> None:
    """No JSON body of ours comes near the upload limit (64 MB): read at
    most API_MAX_JSON_BYTES, whether the size is announced or streamed
    (chunked bodies reach us when the server marks them terminated)."""
    limit, _ = json_limits()
    # One byte more than allowed: a streamed body (no Content-Length) is cut
    # there without an error, and body() refuses what reaches the extra byte.
    request.max_content_length = limit + 1


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "api.openapi":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "Send 'Authorization: Bearer <token>'.")
    user = auth.user_for_token(token.strip())
    if user is None:
        raise ApiError(401, "unauthorized", "The token is not valid.")
    if user.must_change_password:  # a password someone else chose: auth/gate.py
        raise ApiError(403, "password_change_required", str(gate.API_MESSAGE))
    # The token's last use is stored whatever the call does next (a GET
    # commits nothing else, a refused POST rolls back).
    db.session.commit()
    g.api_user = user
    _check_undeclared_read(user)
    return None


def _check_undeclared_read(user: User) -> None:
    """A route that declares no action reads the clinic's records (writes
    must declare one: tests/test_permissions.py): it needs ``VIEW``. Without
    this, an account with no role (Orthanc's push account, whose token sits
    in a file on the Orthanc host) could read every patient."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and getattr(view, "required_action", None) is None and not user.can(Action.VIEW):
        raise ApiError(403, "forbidden", "Your role does not allow this.")


@bp.after_request
def _no_cookies(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


def need(action: Action) -> Callable[[F], F]:
    """The API's decorator over the permission map (:mod:`ghimaging.permissions`)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not g.api_user.can(action):
                raise ApiError(403, "forbidden", "Your role does not allow this.")
            return view(*args, **kwargs)

        wrapped.required_action = action  # type: ignore[attr-defined]  # read by the permission tests
        return wrapped  # type: ignore[return-value]

    return decorator


def json_limits() -> tuple[int, int]:
    """API_MAX_JSON_BYTES and API_MAX_JSON_DEPTH (config.py): a body of a
    few hundred KB covers the longest report (100,000 characters, each up to
    six bytes as a \\u escape); anything nested deeper than a few levels is
    not one of our documents."""
    return int(current_app.config["API_MAX_JSON_BYTES"]), int(current_app.config["API_MAX_JSON_DEPTH"])


def body() -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it.

    Parsed here rather than by ``request.get_json``: Python's parser
    recurses once per level and a body nested ~900 levels deep raised
    RecursionError (a 500). The size is bounded before reading (413, see
    :func:`_bound_body`), the depth after parsing, without recursion."""
    if not request.is_json:
        raise bad_request("Send a JSON object with Content-Type: application/json.")
    raw = request.get_data(cache=True)
    limit, max_depth = json_limits()
    if len(raw) > limit:
        raise RequestEntityTooLarge()
    too_deep = bad_request(f"The JSON is nested too deeply; at most {max_depth} levels are allowed.")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"The body is not valid JSON ({_json_reason(exc)}).") from None
    if not isinstance(data, dict):
        raise bad_request("Send a JSON object with Content-Type: application/json.")
    depth, bad_text = _walk(data, max_depth)
    if depth > max_depth:
        raise too_deep
    if bad_text:
        raise bad_request("Text must not contain NUL characters or unpaired surrogates (\\ud800-\\udfff).")
    return data


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return str(exc)[:200]


# NUL, and halves of a surrogate pair (JSON may spell "\\ud800" alone): no
# database column takes either (a lone surrogate failed at the INSERT, a 500).
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _walk(data: Any, max_depth: int) -> tuple[int, bool]:
    """(depth, whether any key or string holds text no column can store),
    with an explicit stack: stops as soon as ``max_depth`` is passed."""
    deepest, bad = 0, False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            bad = bad or _BAD_TEXT.search(value) is not None
        elif isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > max_depth:
                return deepest, bad
            if isinstance(value, dict):
                bad = bad or any(_BAD_TEXT.search(k) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)
    return deepest, bad


def api_user() -> User:
    """The user the bearer token belongs to (set by :func:`_authenticate`)."""
    user: User = g.api_user
    return user


def _str(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid({key: "Must be a string."})
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise invalid({key: "Must be true or false."})
    return value


def _page() -> tuple[int, int]:
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 50))
    except ValueError:
        raise bad_request("page and per_page must be whole numbers.") from None
    if not 1 <= page <= 1_000_000 or not 1 <= per_page <= MAX_PAGE:
        raise bad_request(f"page must be between 1 and 1000000 and per_page between 1 and {MAX_PAGE}.")
    return page, per_page


def _paged(stmt: Select[Any], serialize: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    page, per_page = _page()
    p = db.paginate(stmt, page=page, per_page=per_page, error_out=False, count=True)
    return {"items": [serialize(x) for x in p.items], "page": page, "per_page": per_page, "total": p.total}


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(document(request.url_root.rstrip("/") + "/api/v1"))


@bp.get("/me")
@need(Action.OWN_ACCOUNT)
def me() -> ResponseReturnValue:
    u = api_user()
    return jsonify(id=u.id, username=u.username, roles=sorted(r.value for r in u.roles))

