"""A light sign-in check for the endpoints asked for many times a second.

The viewer asks for a frame at every scroll step. Loading the signed-in
person the usual way (their session, user and roles as ORM objects, see
:func:`.sessions.load`) was over a third of ghimaging's own time on a
frame (measured in process; the frame's figures are in bench/README.md). An endpoint marked :func:`light` gets, when its
session is live, a :class:`SeenUser` read by :func:`.sessions.peek` in one
statement instead; every check after that is the usual one: the gate (a
password to change), ``requires`` and the permission map, the view itself.

The light read is used only for a request that will pass: whenever it
cannot decide, or the answer is a refusal, it steps aside and the usual
loader runs: no session, an ended or expired one (the loader then clears
the cookies), a disabled user, a session due its once-a-minute touch, a
failed session protection check, a password to change, a role the
endpoint's ``requires`` does not allow. The light user has no ORM object
behind it: a marked view must not need one (``current_user`` there is only
asked who it is and what it may do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request, session

from ..extensions import login_manager
from ..models import Role
from ..permissions import Action, allowed
from . import sessions

F = TypeVar("F", bound=Callable[..., Any])


def light(view: F) -> F:
    """Mark ``view`` as one that takes the light sign-in check; written
    above its ``@requires(...)``, whose action the check reads."""
    if getattr(view, "required_action", None) is None:
        raise TypeError(f"@light goes above @requires(...) on {view.__name__}")
    view.light_sign_in = True  # type: ignore[attr-defined]
    return view


class SeenUser:
    """The signed-in person as :func:`.sessions.peek` read them: what
    Flask-Login, the gate, ``requires`` and the page language ask of a
    user, and no more."""

    is_authenticated = True
    is_active = True  # peek passes active users only
    is_anonymous = False
    active = True

    def __init__(self, seen: sessions.Seen, cookie_id: str):
        self.id = seen.user_id
        self.roles: frozenset[Role] = seen.roles
        self.must_change_password = seen.must_change_password
        self.language = seen.language
        self._cookie_id = cookie_id

    def get_id(self) -> str:
        return self._cookie_id

    def can(self, action: Action | str) -> bool:
        return allowed(self.roles, action)  # active: see is_active


def init_app(app: Flask) -> None:
    """Registered before the gate, which is the first to ask who is signed in."""
    app.before_request(_light_sign_in)


def _light_view() -> Any:
    """This request's view when it is marked :func:`light`, else None."""
    view = current_app.view_functions.get(request.endpoint or "")
    return view if getattr(view, "light_sign_in", False) else None


def is_light() -> bool:
    """Whether this request's endpoint is marked :func:`light`. Such an
    endpoint answers its failures as JSON (errors.py): an error page would be
    drawn for a :class:`SeenUser`, whose name and queues it does not have."""
    return _light_view() is not None


def _light_sign_in() -> None:
    view = _light_view()
    if view is None or "_login_user" in g:
        return
    cookie_id = session.get("_user_id")
    if not isinstance(cookie_id, str) or login_manager._session_protection_failed():
        return  # the loader decides (a remember-me cookie, a protection failure)
    seen = sessions.peek(cookie_id)
    # view.required_action: set by requires(), which light() insists on.
    if seen is None or seen.must_change_password or not allowed(seen.roles, view.required_action):
        # The loader, the gate and requires() answer as for any page, and a
        # refusal page is drawn for the full user (its name, its menu).
        return
    g._login_user = SeenUser(seen, cookie_id)  # what Flask-Login's current_user returns
