from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import Model

if TYPE_CHECKING:
    from ..permissions import Action
from ._time import utcnow


class Role(str, enum.Enum):
    ADMIN = "admin"
    PHYSICIAN = "physician"
    TECHNOLOGIST = "technologist"
    RADIOLOGIST = "radiologist"

    @property
    def label(self) -> str:
        """The role's name as shown, in the reader's language (lazy: also
        used in form choices made at import time)."""
        return _ROLE_LABELS[self.value]


_ROLE_LABELS: dict[str, str] = {
    "admin": _l("Admin"), "physician": _l("Physician"), "technologist": _l("Technologist"),
    "radiologist": _l("Radiologist"),
}


class User(Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(default=True)
    # Set when someone other than the person chose the password (the first
    # admin's printed password, an administrator's reset): until they choose
    # their own, they may do nothing but change it.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: What the signature block of a printed report puts under the name
    #: ("MD, Radiologist"); each person edits their own on the account page.
    credentials: Mapped[str] = mapped_column(String(200), default="")
    #: The language this person reads the pages in ("es", "de", "en"); None
    #: follows the browser's Accept-Language (ghimaging.i18n.select_locale).
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    #: When this person last looked at their start page: the physician's
    #: "results ready since your last visit" counts from here.
    queue_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    role_rows: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )
    sessions: Mapped[list[UserSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    # The sign-in this request belongs to, set by the user loader (not stored):
    # its secret is what Flask-Login puts in the session and remember cookies.
    # (Annotated for mypy only: SQLAlchemy would take an annotation for a column.)
    if TYPE_CHECKING:
        session_secret: str | None
        current_session: UserSession | None
    session_secret = None
    current_session = None

    # What Flask-Login asks of a user (its UserMixin, untyped, is not
    # inherited: these four are all it gives).
    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """``<user id>:<session secret>``: both cookies name one server-side
        :class:`UserSession`, so deleting that row ends them for good."""
        return f"{self.id}:{self.session_secret or ''}"

    def set_password(self, password: str) -> None:
        from flask import current_app

        method = current_app.config.get("PASSWORD_HASH_METHOD") or "scrypt"
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def roles(self) -> set[Role]:
        return {Role(r.role) for r in self.role_rows}

    def set_roles(self, roles: set[Role] | list[Role]) -> None:
        wanted = {Role(r) for r in roles}
        self.role_rows[:] = [r for r in self.role_rows if Role(r.role) in wanted]
        have = self.roles
        for role in sorted(wanted - have, key=lambda r: r.value):
            self.role_rows.append(UserRole(role=role.value))

    def can(self, action: Action | str) -> bool:
        """Whether this user may do ``action`` (:mod:`ghimaging.permissions`)."""
        from ..permissions import allowed

        return self.active and allowed(self.roles, action)

    @property
    def display_name(self) -> str:
        return self.full_name or self.username


class UserRole(Model):
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))
    user: Mapped[User] = relationship(back_populates="role_rows")


class ApiToken(Model):
    """Only a SHA-256 of the token is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    user: Mapped[User] = relationship(back_populates="tokens")


class UserSession(Model):
    """One sign-in (a browser), checked on every request.

    Only a SHA-256 of the secret is stored: a copied database does not give
    cookies (they are also signed with the secret key). Signing out deletes
    the row, which ends the session cookie and the remember-me cookie alike.
    """

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    remember: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Remembered sign-ins end a fixed time after signing in; the others once
    # idle for the session lifetime (moved forward as the session is used).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ip_address: Mapped[str] = mapped_column(String(100), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    user: Mapped[User] = relationship(back_populates="sessions")


class LoginThrottle(Model):
    """Failed sign-ins per (username, address) and per address, kept in the
    database so that every gunicorn worker sees the same count.

    ``kind`` is ``user`` (a username from one address) or ``address`` (any
    username from one address); never a username alone, which would let
    anyone lock the rightful user out.
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    username: Mapped[str] = mapped_column(String(64), default="")
    address: Mapped[str] = mapped_column(String(100))
    failures: Mapped[int] = mapped_column(default=0)
    first_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # No attempt for this key is checked before this instant.
    locked_until: Mapped[datetime | None]
