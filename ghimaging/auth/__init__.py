"""Signing in, sessions, users and API tokens (see :mod:`.routes` for the
pages and the user loader, :mod:`.service` for the rules)."""

from __future__ import annotations

from flask import Flask

from ..extensions import login_manager


def init_app(app: Flask) -> None:
    from .routes import bp  # also registers the user loader

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)
