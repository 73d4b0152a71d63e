"""Server-side sign-in sessions: each sign-in is a :class:`UserSession` row
whose secret travels in the (signed) session cookie and the remember-me
cookie. Every request checks the row, so deleting it ends that sign-in for
good: a cookie saved before signing out, or copied from the browser, is
refused afterwards.

Shared by the pages (sign in, sign out, account), the admin pages (reset,
disable) and the password rules in :mod:`.service`. Nothing here commits:
the page that called commits (the user loader in :mod:`.routes` for the
once-a-minute touch of :func:`load`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_request_context, request
from flask import session as flask_session
from sqlalchemy import Select, bindparam, delete, func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Role, User, UserRole, UserSession
from ..models._time import utcnow
from ..querytools import rowcount

# last_seen_at is written at most this often: one write a minute per
# browser, not one per request.
TOUCH_EVERY = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _lifetime(remember: bool) -> timedelta:
    lifetime: timedelta = current_app.config["REMEMBER_COOKIE_DURATION" if remember else "PERMANENT_SESSION_LIFETIME"]
    return lifetime


def _client() -> tuple[str, str]:
    if not has_request_context():
        return "", ""
    return (request.remote_addr or "")[:100], (request.user_agent.string or "")[:200]


def create(user: User, *, remember: bool) -> str:
    """A new session for ``user``; returns its secret (never stored)."""
    now = utcnow()
    secret = secrets.token_urlsafe(32)
    ip, agent = _client()
    row = UserSession(user=user, secret_hash=_hash(secret), remember=remember, created_at=now,
                      last_seen_at=now, expires_at=now + _lifetime(remember), ip_address=ip,
                      user_agent=agent)
    db.session.add(row)
    # Expired rows of anyone: the table holds live sign-ins only.
    db.session.execute(delete(UserSession).where(UserSession.expires_at < now))
    db.session.flush()
    user.session_secret, user.current_session = secret, row
    return secret


def _named(user_id: str) -> tuple[int, str] | None:
    """(user id, secret) from a cookie's ``<id>:<secret>``; None for anything
    else (also every cookie from before sessions were kept here)."""
    uid_text, _, secret = user_id.partition(":")
    if not re.fullmatch(r"[0-9]{1,9}", uid_text) or not secret:  # isdigit() passes "²", which int() refuses
        return None
    return int(uid_text), secret


def _live(named_user: int, row_user: int, expires_at: datetime, active: bool, now: datetime) -> bool:
    """The rule for a session that still signs its user in: the cookie's user
    is the row's, the row has not expired, the user is not disabled."""
    return row_user == named_user and expires_at > now and active


def _touch_due(last_seen_at: datetime, now: datetime) -> bool:
    """Whether a live session's row is due its once-a-minute touch (only
    :func:`load` writes it)."""
    return now - last_seen_at >= TOUCH_EVERY


def load(user_id: str) -> User | None:
    """The user of a live session named by a cookie's ``<id>:<secret>``, or
    None (unknown, ended or expired session, or a disabled user). The
    session row is touched (not flushed) at most once a minute: the caller
    commits it when ``db.session.is_modified(user.current_session)``."""
    named = _named(user_id)
    if named is None:
        return None
    uid, secret = named
    # One statement for the session, its user and the user's roles: this runs
    # before every page.
    row = db.session.scalar(select(UserSession)
                           .options(joinedload(UserSession.user).joinedload(User.role_rows))
                           .where(UserSession.secret_hash == _hash(secret)))
    now = utcnow()
    if row is None or not _live(uid, row.user_id, row.expires_at, row.user.active, now):
        return None
    if _touch_due(row.last_seen_at, now):
        row.last_seen_at = now
        if not row.remember:
            row.expires_at = now + _lifetime(False)
        if has_request_context():
            flask_session.modified = True  # the cookie's expiry moves with the row's (SESSION_REFRESH_EACH_REQUEST)
        ip, _ = _client()
        if ip:
            row.ip_address = ip
    user: User = row.user
    user.session_secret, user.current_session = secret, row
    return user


@dataclass(frozen=True)
class Seen:
    """What :func:`peek` reads of a live session's user."""

    user_id: int
    roles: frozenset[Role]
    must_change_password: bool
    language: str | None


def _peek_statement() -> Select[Any]:
    us, u, ur = UserSession.__table__.c, User.__table__.c, UserRole.__table__.c
    return (select(us.user_id, us.expires_at, us.last_seen_at, u.active, u.must_change_password, u.language, ur.role)
            .select_from(UserSession.__table__.join(User.__table__, u.id == us.user_id)
                         .outerjoin(UserRole.__table__, ur.user_id == u.id))
            .where(us.secret_hash == bindparam("secret_hash")))


# Built once: building the statement cost as much as running it.
_PEEK = _peek_statement()


def peek(user_id: str) -> Seen | None:
    """The user of a live session as :func:`load` decides it, read in one
    light statement (no ORM objects), for requests that come many times a
    second (:mod:`.light`). None when :func:`load` must run instead: no such
    live session (it then also clears the cookies), or the row is due its
    once-a-minute touch (written by :func:`load` only)."""
    named = _named(user_id)
    if named is None:
        return None
    rows = db.session.execute(_PEEK, {"secret_hash": _hash(named[1])}).all()
    now = utcnow()
    if not rows or not _live(named[0], rows[0].user_id, rows[0].expires_at, rows[0].active, now) \
            or _touch_due(rows[0].last_seen_at, now):
        return None
    return Seen(rows[0].user_id, frozenset(Role(r.role) for r in rows if r.role is not None),
                rows[0].must_change_password, rows[0].language)


def active(user: User) -> list[UserSession]:
    """The user's live sessions, most recently used first."""
    return list(db.session.scalars(
        select(UserSession).where(UserSession.user_id == user.id, UserSession.expires_at > utcnow())
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())))


def count_active(user: User) -> int:
    return db.session.scalar(select(func.count()).select_from(UserSession).where(
        UserSession.user_id == user.id, UserSession.expires_at > utcnow())) or 0


def end(user: User, session_id: int) -> bool:
    """End one of ``user``'s sessions; False if it is not theirs."""
    result = db.session.execute(delete(UserSession).where(UserSession.id == session_id,
                                                          UserSession.user_id == user.id))
    return bool(rowcount(result))


def end_all(user: User, *, keep: UserSession | None = None) -> int:
    """End every session of ``user`` (but ``keep``); the number ended."""
    stmt = delete(UserSession).where(UserSession.user_id == user.id)
    if keep is not None:
        stmt = stmt.where(UserSession.id != keep.id)
    return rowcount(db.session.execute(stmt))
