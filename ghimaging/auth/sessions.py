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
import secrets
from datetime import timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import delete, func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import User, UserSession
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


def load(user_id: str) -> User | None:
    """The user of a live session named by a cookie's ``<id>:<secret>``, or
    None (unknown, ended or expired session, or a disabled user). The
    session row is touched (not flushed) at most once a minute: the caller
    commits it when ``db.session.is_modified(user.current_session)``."""
    uid_text, _, secret = user_id.partition(":")
    if not uid_text.isdigit() or not secret:
        return None  # also every cookie from before sessions were kept here
    # One statement for the session, its user and the user's roles: this runs
    # before every page and every viewer frame.
    row = db.session.scalar(select(UserSession)
                           .options(joinedload(UserSession.user).joinedload(User.role_rows))
                           .where(UserSession.secret_hash == _hash(secret)))
    now = utcnow()
    if row is None or row.user_id != int(uid_text) or row.expires_at <= now or not row.user.active:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        if not row.remember:
            row.expires_at = now + _lifetime(False)
        ip, _ = _client()
        if ip:
            row.ip_address = ip
    user: User = row.user
    user.session_secret, user.current_session = secret, row
    return user


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
