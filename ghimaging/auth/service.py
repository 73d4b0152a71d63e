"""Users, passwords, signing in and API tokens: shared by the login page,
the admin pages, the API and the CLI. Sessions live in :mod:`.sessions`,
sign-in throttling in :mod:`.throttle`.

Nothing here commits: the page, API call or CLI command that called a
function commits once when it succeeded (and rolls back when it failed)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select

from ..exceptions import Conflict, DomainError, Invalid
from ..extensions import db
from ..models import ApiToken, Role, User, UserSession
from ..models._time import utcnow
from . import sessions, throttle

MIN_PASSWORD_LENGTH = 8
# Lazy: each is translated when it is raised, into the reader's language
# (str() where an exception needs a plain string).
NO_ROLE = _l("Give the user at least one role.")
SERVICE_ACCOUNT_FIXED = _l("A service account has no roles and no password; it can only be enabled or disabled.")
SAME_PASSWORD = _l("Choose a password different from the one you signed in with.")
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
        return str(_("Password must be at least %(count)s characters.", count=MIN_PASSWORD_LENGTH))
    if password.strip() == "" or len(set(password)) < 3:
        return str(_("Password is too simple."))
    return None


def find_user(username: str) -> User | None:
    from ..querytools import find_casefolded

    return find_casefolded(User, User.username, username)


def is_service_account(user: User) -> bool:
    """An account with no role is a program's (Orthanc's push script), made
    by :func:`create_service_account`: a person always has a role (creating
    or editing one without a role is refused), so no flag is needed."""
    return not user.roles


def _free_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        message = _("Username must be 1-64 characters without spaces.")
        raise UserInvalid(message, fields={"username": message})
    if find_user(username):
        raise UserConflict(_("A user named %(name)s already exists.", name=repr(username)), code="duplicate")
    return username


def create_user(username: str, password: str, roles: list[Role], full_name: str = "",
                email: str = "", active: bool = True, *, must_change_password: bool = False) -> User:
    """A person. ``must_change_password``: the password was chosen by
    someone else (an administrator, the installer), so the person must
    choose their own at the next sign-in (:mod:`.gate`)."""
    username = _free_username(username)
    problem = password_problem(password)
    if problem:
        raise UserInvalid(problem, fields={"password": problem})
    if not roles:
        raise UserInvalid(str(NO_ROLE), fields={"roles": str(NO_ROLE)})
    user = User(username=username, full_name=full_name.strip(), email=email.strip(), active=active,
                must_change_password=must_change_password)
    user.set_password(password)
    user.set_roles(roles)
    db.session.add(user)
    db.session.flush()
    return user


def create_service_account(username: str, full_name: str) -> User:
    """An account for a program (Orthanc's push), used only with API tokens
    (:func:`create_token`). It has no role, so the permission map gives it
    only what every account may do (its own account, waking a sync); its
    password is random and thrown away, and :func:`authenticate` refuses it
    whatever is typed, so it never signs in to the pages. Callers look the
    name up first (:func:`find_user`) when they must be idempotent."""
    user = User(username=_free_username(username), full_name=full_name.strip(), active=True)
    user.set_password(secrets.token_urlsafe(32))
    db.session.add(user)
    db.session.flush()
    return user


def set_service_account_active(user: User, active: bool) -> None:
    """The one change the admin page makes to a service account. Its tokens
    stay while it is disabled (they stop working, :func:`user_for_token`)
    so that enabling it again does not mean reconfiguring Orthanc; a token
    to end for good is revoked on the same page."""
    if not is_service_account(user):
        raise UserConflict(_("This is a person's account, not a service account."), code="not_service_account")
    user.active = active
    db.session.flush()


def update_user(user: User, *, full_name: str, email: str, roles: list[Role], active: bool,
                acting: User) -> None:
    if is_service_account(user):
        # Giving it a role would turn a program's account into a person's.
        raise UserConflict(str(SERVICE_ACCOUNT_FIXED), code="service_account")
    if not roles:
        raise UserInvalid(str(NO_ROLE), fields={"roles": str(NO_ROLE)})
    if user.id == acting.id and (not active or Role.ADMIN not in roles):
        raise UserConflict(_("You cannot disable yourself or remove your own admin role."), code="own_account")
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
        raise UserConflict(_("This is the last active administrator; keep at least one."), code="last_admin")


def change_password(user: User, password: str, *, keep: UserSession | None = None,
                    revoke_tokens: bool = False, chosen_by_user: bool) -> None:
    """A new password ends every session of the user but ``keep`` (the one
    making the change), and their API tokens if asked: whoever knew the old
    password may have signed in or made a token with it. A password not
    ``chosen_by_user`` must be changed at the next sign-in; one they chose
    lifts that."""
    if is_service_account(user):
        raise UserConflict(str(SERVICE_ACCOUNT_FIXED), code="service_account")
    problem = password_problem(password)
    if problem:
        raise UserInvalid(problem, fields={"password": problem})
    user.set_password(password)
    user.must_change_password = not chosen_by_user
    sessions.end_all(user, keep=keep)
    if revoke_tokens:
        _delete_tokens(user)
    db.session.flush()


def change_own_password(user: User, current: str, password: str, *, revoke_tokens: bool = False) -> None:
    """The account page's change: the current password first, then
    :func:`change_password` keeping the session that asks."""
    if not user.check_password(current):
        raise UserInvalid(fields={"current_password": _("This is not your current password.")})
    if user.check_password(password):
        # Above all for a one-time password: keeping it would keep a
        # password someone else knows.
        raise UserInvalid(str(SAME_PASSWORD), fields={"new_password": str(SAME_PASSWORD)})
    change_password(user, password, keep=user.current_session, revoke_tokens=revoke_tokens, chosen_by_user=True)


def reset_password(user: User, password: str, *, acting: User) -> None:
    """An administrator's reset: the user's sessions and API tokens all end
    (an admin resetting their own password keeps the session doing it), and
    the user must choose their own password at the next sign-in (an admin
    resetting their own chose it themselves)."""
    keep = acting.current_session if acting.id == user.id else None
    change_password(user, password, keep=keep, revoke_tokens=True, chosen_by_user=acting.id == user.id)


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
        # A service account's password is random and unknown, but it is
        # refused anyway: its only way in is an API token.
        ok = user.check_password(password) and user.active and not is_service_account(user)
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


def create_service_token(user: User, name: str = "") -> str:
    """A token an administrator makes for a service account (a person's
    tokens are made by that person only)."""
    if not is_service_account(user):
        raise UserConflict(_("Only a service account's tokens are made by an administrator."),
                           code="not_service_account")
    return create_token(user, name)


def user_for_token(token: str) -> User | None:
    """The active user of ``token``, or None. Its last use is stamped at
    most once a minute; the API request that asked commits it."""
    row = _active_token(token)
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    user: User = row.user
    return user


def _active_token(token: str) -> ApiToken | None:
    if not token:
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    return row if row is not None and row.user.active else None


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
