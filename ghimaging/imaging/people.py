"""The staff a request or result names: who may be chosen, found by
username (the API) or id (the pages), and who is meant when nobody is."""

from __future__ import annotations

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import select

from ..auth import service as auth
from ..extensions import db
from ..models import Role, User, UserRole
from .errors import ValidationError


def with_role(role: Role) -> list[User]:
    return list(db.session.scalars(
        select(User).join(UserRole).where(UserRole.role == role.value, User.active.is_(True))
        .order_by(User.full_name, User.username)
    ))


def choices(role: Role) -> list[tuple[int, str]]:
    """A select's choices: none, then the active users with ``role``."""
    return [(0, _("— none —"))] + [(u.id, u.display_name) for u in with_role(role)]


def by_id(user_id: int | None) -> User | None:
    return db.session.get(User, user_id) if user_id else None


def by_name(name: str, field: str) -> User | None:
    """The user called ``name`` (None for an empty name), or ValidationError on ``field``."""
    if not name:
        return None
    user = auth.find_user(name)
    if user is None:
        raise ValidationError({field: _("No user %(name)s.", name=repr(name))})
    return user


def or_self(chosen: User | None, user: User, role: Role) -> User | None:
    """Nobody chosen: the user who acts, when they hold ``role`` (a physician
    orders for themself, a radiologist reports for themself)."""
    if chosen is None and role in user.roles:
        return user
    return chosen
