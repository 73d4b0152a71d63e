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

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_login import current_user

if TYPE_CHECKING:
    from ..models import User

#: What such a browser may still reach: the page to choose a password,
#: signing out, and the style sheets and scripts those pages need.
EXEMPT = frozenset({"auth.choose_password", "auth.logout", "static", "health.healthz"})
#: Lazy, so each page and answer is in its reader's language (``str()`` where a
#: plain string is needed).
MESSAGE = _l("Choose your own password before you continue: the one you signed in with was given to you.")
#: What the API answers (403 ``password_change_required``) for such a person's token.
API_MESSAGE = _l("The token's user must choose their own password on the web pages before the token works "
                 "again.")


#: Where ``ghimaging init --create-admin`` keeps the password it printed
#: (in the instance folder) until the administrator deletes the file.
PRINTED_PASSWORD_FILE = "initial-admin-password"


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


def check_printed_password(user: User, password: str) -> None:
    """At sign-in: a password that is still the one ``init`` printed (its
    file is still in the instance folder) must be replaced, whatever the
    account's flag says. An install whose first administrator was made
    before the flag existed (migration 0010 set it false for everyone)
    would otherwise keep signing in with the printed password for good."""
    path = Path(current_app.instance_path) / PRINTED_PASSWORD_FILE
    try:
        printed = path.read_text(encoding="utf-8").split("\n", 1)[0].strip()
    except (OSError, ValueError):  # no file (deleted, as it should be), or unreadable
        return
    if printed and hmac.compare_digest(printed.encode(), password.encode()):
        user.must_change_password = True
