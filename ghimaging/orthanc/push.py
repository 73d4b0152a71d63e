"""The account whose token Orthanc's push script holds
(``ghimaging orthanc push-token``).

The token sits in a file on the Orthanc host, so its account has no role:
the permission map gives it waking a sync and nothing else (it reads no
patient). Each new push token replaces the account's previous push tokens,
so re-running the installer leaves exactly one.
"""

from __future__ import annotations

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import delete

from ..auth import service as auth
from ..exceptions import Conflict
from ..extensions import db
from ..models import ApiToken, User

DEFAULT_USER = "orthanc-push"
FULL_NAME = "Orthanc push"
TOKEN_NAME = "orthanc push"
#: The name the installer gave the push account when it was a technologist
#: (before the wake endpoint): such an account is made role-less here.
LEGACY_FULL_NAME = "Orthanc push (installer)"


def push_account(username: str = DEFAULT_USER) -> User:
    """The role-less push account, made if missing (flushed). An earlier
    installer's technologist account of that name loses its role and every
    token (they could read every patient); any other person's account of
    that name is refused: :class:`Conflict`."""
    user = auth.find_user(username)
    if user is None:
        return auth.create_service_account(username, FULL_NAME)
    if user.roles:
        if user.full_name != LEGACY_FULL_NAME:
            raise Conflict(_("User '%(user)s' is a person's account (roles: %(roles)s); choose another name for "
                             "the push account.", user=user.username,
                             roles=", ".join(sorted(r.value for r in user.roles))), code="not_service_account")
        db.session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        user.set_roles([])
        user.full_name = FULL_NAME
        db.session.flush()
        db.session.expire(user, ["tokens"])
    if not user.active:
        raise Conflict(_("The push account '%(user)s' is disabled; enable it on the Users page first.",
                         user=user.username), code="inactive")
    return user


def new_push_token(user: User) -> str:
    """A new push token for ``user``; its earlier push tokens stop working
    (flushed; the token is returned once, stored only as a hash)."""
    db.session.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == TOKEN_NAME))
    db.session.expire(user, ["tokens"])
    return auth.create_token(user, TOKEN_NAME)
