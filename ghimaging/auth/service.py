"""Users, passwords, signing in and API tokens: shared by the login page,
the admin pages, the API and the CLI. Sessions live in :mod:`.sessions`,
sign-in throttling in :mod:`.throttle`.

Nothing here commits: the page, API call or CLI command that called a
function commits once when it succeeded (and rolls back when it failed)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select

from ..exceptions import Conflict, DomainError, Invalid
from ..extensions import db
from ..models import ApiToken, Role, User, UserSession
from ..models._time import utcnow
from . import sessions, throttle

MIN_PASSWORD_LENGTH = 8
NO_ROLE = "Give the user at least one role."
# A hash to check against when the username does not exist, so that a wrong
# username costs the same time as a wrong password.
_DUMMY_HASH: str | None = None


class UserError(DomainError):
    """A user-management request that cannot be carried out; the message is
    safe to show. The views catch this name; each case is one of the two
    kinds below."""


class UserInvalid(UserError, Invalid):
    """A username, password or set of roles that cannot be accepted."""


class UserConflict(UserError, Conflict):
    """A name already taken, or a change the other users forbid (the last
    administrator, one's own admin role)."""


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters."
    if password.strip() == "" or len(set(password)) < 3:
        return "Password is too simple."
    return None


def find_user(username: str) -> User | None:
    from ..querytools import find_casefolded

    return find_casefolded(User, User.username, username)


def create_user(username: str, password: str, roles: list[Role], full_name: str = "",
                email: str = "", active: bool = True) -> User:
    username = username.strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise UserInvalid("Username must be 1-64 characters without spaces.",
                          fields={"username": "Username must be 1-64 characters without spaces."})
    if find_user(username):
        raise UserConflict(f"A user named {username!r} already exists.", code="duplicate")
    problem = password_problem(password)
    if problem:
        raise UserInvalid(problem, fields={"password": problem})
    if not roles:
        raise UserInvalid(NO_ROLE, fields={"roles": NO_ROLE})
    user = User(username=username, full_name=full_name.strip(), email=email.strip(), active=active)
    user.set_password(password)
    user.set_roles(roles)
    db.session.add(user)
    db.session.flush()
    return user


def update_user(user: User, *, full_name: str, email: str, roles: list[Role], active: bool,
                acting: User) -> None:
    if not roles:
        raise UserInvalid(NO_ROLE, fields={"roles": NO_ROLE})
    if user.id == acting.id and (not active or Role.ADMIN not in roles):
        raise UserConflict("You cannot disable yourself or remove your own admin role.", code="own_account")
    if (user.active and not active) or (Role.ADMIN in user.roles and Role.ADMIN not in roles):
        _ensure_other_admin(user)
    if user.active and not active:
        end_access(user)  # a disabled user is out at once, browsers and scripts
    user.full_name = full_name.strip()
    user.email = email.strip()
    user.active = active
    user.set_roles(roles)
    db.session.flush()


def _ensure_other_admin(user: User) -> None:
    others = [
        u for u in db.session.scalars(select(User).where(User.active.is_(True), User.id != user.id))
        if Role.ADMIN in u.roles
    ]
    if not others:
        raise UserConflict("This is the last active administrator; keep at least one.", code="last_admin")


def change_password(user: User, password: str, *, keep: UserSession | None = None,
                    revoke_tokens: bool = False) -> None:
    """A new password ends every session of the user but ``keep`` (the one
    making the change), and their API tokens if asked: whoever knew the old
    password may have signed in or made a token with it."""
    problem = password_problem(password)
    if problem:
        raise UserInvalid(problem, fields={"password": problem})
    user.set_password(password)
    sessions.end_all(user, keep=keep)
    if revoke_tokens:
        _delete_tokens(user)
    db.session.flush()


def change_own_password(user: User, current: str, password: str, *, revoke_tokens: bool = False) -> None:
    """The account page's change: the current password first, then
    :func:`change_password` keeping the session that asks."""
    if not user.check_password(current):
        raise UserInvalid(fields={"current_password": "This is not your current password."})
    change_password(user, password, keep=user.current_session, revoke_tokens=revoke_tokens)


def reset_password(user: User, password: str, *, acting: User) -> None:
    """An administrator's reset: the user's sessions and API tokens all end
    (an admin resetting their own password keeps the session doing it)."""
    keep = acting.current_session if acting.id == user.id else None
    change_password(user, password, keep=keep, revoke_tokens=True)


def end_access(user: User) -> None:
    """End every session and delete every API token of ``user``."""
    sessions.end_all(user)
    _delete_tokens(user)


# -- signing in -------------------------------------------------------------

def authenticate(username: str, password: str, remote_addr: str | None) -> User | None:
    """The user if the password is right and the account active, else None.

    Callers check :func:`.throttle.wait_seconds` first and show one message
    for every failure; failures and successes are recorded here.
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
        throttle.record_success(username, remote_addr)
        return user
    throttle.record_failure(username, remote_addr)
    return None


# -- API tokens -------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user: User, name: str = "") -> str:
    """A new token for ``user``; returned once, stored only as a hash."""
    token = "ghi_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, name=name.strip()[:100], token_hash=hash_token(token),
                            prefix=token[:10]))
    db.session.flush()
    return token


def user_for_token(token: str) -> User | None:
    """The active user of ``token``, or None. Its last use is stamped at
    most once a minute; the API request that asked commits it."""
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or not row.user.active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    user: User = row.user
    return user


def _delete_tokens(user: User) -> None:
    db.session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    db.session.expire(user, ["tokens"])


def revoke_token(user: User, token_id: int) -> bool:
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        return False
    db.session.delete(row)
    db.session.flush()
    return True
