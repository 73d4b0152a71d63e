from __future__ import annotations

from flask import Flask

from ..extensions import db, login_manager
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
    """Session ids are ``<id>:<session_version>`` so a password change or a
    disabled account ends the user's other sessions."""
    try:
        uid, version = (int(x) for x in user_id.split(":", 1))
    except ValueError:
        return None
    user = db.session.get(User, uid)
    if user is None or user.session_version != version:
        return None
    return user
