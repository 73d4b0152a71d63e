"""The one check of a password someone else chose (issue 11, issue 13).

The first administrator's printed password and any password an
administrator set for another person are known to someone else: until the
person chooses their own (``User.must_change_password`` is cleared by
:func:`.service.change_own_password`), a signed-in browser reaches only the
endpoints in :data:`EXEMPT` and is sent to the page to choose it from every
other one. Checked here, before every page, rather than in each view or
decorator, so that a page added later cannot forget it. An API token of
that person (one made before, by the CLI for instance) gets a 403
``password_change_required`` from the API's one authentication step
(``api/routes._authenticate``), which has already looked the token up.
"""

from __future__ import annotations

from flask import Flask, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

#: What such a browser may still reach: the page to choose a password,
#: signing out, and the style sheets and scripts those pages need.
EXEMPT = frozenset({"auth.choose_password", "auth.logout", "static", "health.healthz"})
MESSAGE = "Choose your own password before you continue: the one you signed in with was given to you."
#: What the API answers (403 ``password_change_required``) for such a person's token.
API_MESSAGE = ("The token's user must choose their own password on the web pages before the token works "
               "again.")


def init_app(app: Flask) -> None:
    app.before_request(_gate)


def _gate() -> ResponseReturnValue | None:
    endpoint = request.endpoint
    if endpoint is None or endpoint in EXEMPT:
        return None  # a 404, or allowed to everyone
    if request.blueprint == "api":
        return None  # tokens are checked where the API authenticates them (api/routes._authenticate)
    if current_user.is_authenticated and current_user.must_change_password:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.choose_password", next=target))
    return None
