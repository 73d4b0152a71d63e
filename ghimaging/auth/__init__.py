from __future__ import annotations

from flask import Flask, current_app, request, session
from flask_login.utils import decode_cookie

from ..extensions import login_manager
from ..models import User


def init_app(app: Flask) -> None:
    from .routes import bp

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Cookies carry ``<user id>:<session secret>``; the session must still
    exist server-side (see :mod:`.sessions`)."""
    from . import sessions

    user = sessions.load(user_id)
    if user is None:
        session.pop("_user_id", None)
        # A remember-me cookie naming the same dead session is dropped, so
        # the browser stops sending it.
        cookie = request.cookies.get(current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token"))
        if cookie is not None and decode_cookie(cookie) in (None, user_id):
            session["_remember"] = "clear"
    return user
