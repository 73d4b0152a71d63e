"""The one check of a password someone else chose (issue 11, issue 13).

The first administrator's printed password and any password an
administrator set for another person are known to someone else: until the
person chooses their own (``User.must_change_password`` is cleared by
:func:`.service.change_own_password`), a signed-in browser reaches only the
endpoints in :data:`EXEMPT` and is sent to the page to choose it from every
other one; an API token of that person (one made before, by the CLI for
instance) gets a 403 ``password_change_required``. Checked here, before
every view, rather than in each view or decorator, so that a page added
later cannot forget it.
"""

from __future__ import annotations

from flask import Flask, jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from . import service

#: What such a browser may still reach: the page to choose a password,
#: signing out, and the style sheets and scripts those pages need.
EXEMPT = frozenset({"auth.choose_password", "auth.logout", "static"})
#: API endpoints open without a token, where no user is known.
API_PUBLIC = frozenset({"api.openapi"})
MESSAGE = "Choose your own password before you continue: the one you signed in with was given to you."


def init_app(app: Flask) -> None:
    app.before_request(_gate)


def _gate() -> ResponseReturnValue | None:
    endpoint = request.endpoint
    if endpoint is None or endpoint in EXEMPT:
        return None  # a 404, or allowed to everyone
    if request.blueprint == "api":
        if endpoint in API_PUBLIC:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = service.token_owner(token.strip()) if scheme.lower() == "bearer" else None
        if user is not None and user.must_change_password:
            # An unknown token is the API's own 401 (api.routes._authenticate).
            return jsonify(error="password_change_required",
                           message="The token's user must choose their own password on the web "
                                   "pages before the token works again."), 403
        return None
    if current_user.is_authenticated and current_user.must_change_password:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.choose_password", next=target))
    return None
