"""Signing in, sessions, users and API tokens (see :mod:`.routes` for the
pages and the user loader, :mod:`.admin_routes` for user administration,
:mod:`.service` for the rules, :mod:`.gate` for a password someone else
chose)."""

from __future__ import annotations

from flask import Flask

from ..extensions import login_manager


def init_app(app: Flask) -> None:
    from . import admin_routes, gate, light  # noqa: F401  # admin_routes: the administration pages, on bp too
    from .routes import bp  # also registers the user loader

    light.init_app(app)  # before the gate, the first hook to ask who is signed in
    gate.init_app(app)

    login_manager.login_view = "auth.login"
    from flask_babel import lazy_gettext  # type: ignore[import-untyped]  # Flask-Babel ships no types

    login_manager.login_message = lazy_gettext("Please sign in to continue.")
    login_manager.localize_callback = str  # flashed as text in the reader's language (a lazy one cannot be stored)
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)
