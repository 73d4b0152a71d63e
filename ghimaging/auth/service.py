"""Users, passwords, login throttling and API tokens: shared by the login
page, the admin pages, the API and the CLI."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, or_, select

from ..extensions import db
from ..models import ApiToken, LoginThrottle, Role, User
from ..models._time import utcnow

MIN_PASSWORD_LENGTH = 8
# A hash to check against when the username does not exist, so that a wrong
# username costs the same time as a wrong password.
_DUMMY_HASH: str | None = None


class UserError(ValueError):
    """A user-management request that cannot be carried out; the message is
    safe to show."""


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters."
    if password.strip() == "" or len(set(password)) < 3:
        return "Password is too simple."
    return None


def find_user(username: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def create_user(username: str, password: str, roles: list[Role], full_name: str = "",
                email: str = "", active: bool = True) -> User:
    username = username.strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise UserError("Username must be 1-64 characters without spaces.")
    if find_user(username):
        raise UserError(f"A user named {username!r} already exists.")
    problem = password_problem(password)
    if problem:
        raise UserError(problem)
    if not roles:
        raise UserError("Give the user at least one role.")
    user = User(username=username, full_name=full_name.strip(), email=email.strip(), active=active)
    user.set_password(password)
    user.set_roles(roles)
    db.session.add(user)
    db.session.commit()
    return user


def update_user(user: User, *, full_name: str, email: str, roles: list[Role], active: bool,
                acting: User) -> None:
    if not roles:
        raise UserError("Give the user at least one role.")
    if user.id == acting.id and (not active or Role.ADMIN not in roles):
        raise UserError("You cannot disable yourself or remove your own admin role.")
    if user.active and not active or Role.ADMIN in user.roles and Role.ADMIN not in roles:
        _ensure_other_admin(user)
    if user.active and not active:
        user.session_version += 1
    user.full_name = full_name.strip()
    user.email = email.strip()
    user.active = active
    user.set_roles(roles)
    db.session.commit()


def _ensure_other_admin(user: User) -> None:
    others = [
        u for u in db.session.scalars(select(User).where(User.active.is_(True), User.id != user.id))
        if Role.ADMIN in u.roles
    ]
    if not others:
        raise UserError("This is the last active administrator; keep at least one.")


def set_password(user: User, password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise UserError(problem)
    user.set_password(password)
    user.session_version += 1  # sign out the user's other sessions
    db.session.commit()


# -- login throttling -------------------------------------------------------

def _throttle_keys(username: str, remote_addr: str | None) -> list[str]:
    return [f"user:{username.strip().lower()}", f"addr:{remote_addr or '-'}"]


def seconds_locked(username: str, remote_addr: str | None) -> int:
    now = utcnow()
    worst = 0
    for key in _throttle_keys(username, remote_addr):
        row = db.session.get(LoginThrottle, key)
        if row and row.locked_until and row.locked_until > now:
            worst = max(worst, int((row.locked_until - now).total_seconds()) + 1)
    return worst


def authenticate(username: str, password: str, remote_addr: str | None) -> User | None:
    """The user if the password is right and the account active, else None.

    Failures are counted per username and per address; callers check
    :func:`seconds_locked` first and show one message for every failure.
    """
    global _DUMMY_HASH
    user = find_user(username)
    if user is None:
        if _DUMMY_HASH is None:
            from werkzeug.security import generate_password_hash

            _DUMMY_HASH = generate_password_hash(secrets.token_hex(8))
        from werkzeug.security import check_password_hash

        check_password_hash(_DUMMY_HASH, password)
        ok = False
    else:
        ok = user.check_password(password) and user.active
    if ok:
        for key in _throttle_keys(username, remote_addr)[:1]:
            row = db.session.get(LoginThrottle, key)
            if row:
                db.session.delete(row)
        db.session.commit()
        return user
    _record_failure(username, remote_addr)
    return None


def _record_failure(username: str, remote_addr: str | None) -> None:
    from sqlalchemy.exc import IntegrityError

    try:
        _count_failure(username, remote_addr)
    except IntegrityError:  # two failures for a new key at the same moment
        db.session.rollback()
        _count_failure(username, remote_addr)


def _count_failure(username: str, remote_addr: str | None) -> None:
    conf = current_app.config
    now = utcnow()
    window = timedelta(seconds=conf["LOGIN_LOCKOUT_SECONDS"])
    for i, key in enumerate(_throttle_keys(username, remote_addr)):
        limit = conf["LOGIN_MAX_FAILURES"] * (1 if i == 0 else 4)
        row = db.session.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, first_failure_at=now)
            db.session.add(row)
        if now - row.first_failure_at > window:
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + window
    # Forget old entries (invented usernames would otherwise pile up).
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.first_failure_at < now - 2 * window,
                                                   or_(LoginThrottle.locked_until.is_(None),
                                                       LoginThrottle.locked_until < now)))
    db.session.commit()


# -- API tokens -------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user: User, name: str = "") -> str:
    """A new token for ``user``; returned once, stored only as a hash."""
    token = "ghi_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, name=name.strip()[:100], token_hash=hash_token(token),
                            prefix=token[:10]))
    db.session.commit()
    return token


def user_for_token(token: str) -> User | None:
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or not row.user.active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
        db.session.commit()
    return row.user


def revoke_token(user: User, token_id: int) -> bool:
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        return False
    db.session.delete(row)
    db.session.commit()
    return True
