"""Who may do what: the one map from action to roles.

Pages (:func:`ghimaging.auth.decorators.requires`), the API
(:func:`ghimaging.api.routes.need`), templates (``can('order')``, which is
:meth:`User.can <ghimaging.models.users.User.can>`) and the
services that check a person's role (the ordering physician must be allowed
to order) all ask this map, so a rule changes in one line and the
permission-matrix test (tests/test_permissions.py) reads the same map.

Administrators pass every check: in a clinic of three people the
administrator is often also the one who orders or reports.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .models.users import Role


class Action(str, enum.Enum):
    # Any signed-in person: their own account, sessions, tokens, sign-out.
    OWN_ACCOUNT = "own_account"
    # Read the clinic's records: patients, requests, results, studies, images.
    VIEW = "view"
    # Register and edit patients, import them from GNU Health, unlink an
    # Orthanc patient from a local one.
    EDIT_PATIENTS = "edit_patients"
    # Order, edit, submit and cancel imaging requests.
    ORDER = "order"
    # Write, finalise and amend results; key images.
    REPORT = "report"
    # Upload DICOM files, start an Orthanc sync by hand.
    PERFORM = "perform"
    # Link, confirm and unlink studies and requests (the Inbox).
    LINK_STUDIES = "link_studies"
    # Send a request's GNU Health sync again after a failure.
    RETRY_SYNC = "retry_sync"
    # Delete studies and series in Orthanc.
    DELETE_IMAGES = "delete_images"
    # Users, sign-in throttles.
    MANAGE_USERS = "manage_users"
    # The catalogue of tests and modality types.
    MANAGE_CATALOG = "manage_catalog"
    # Clinic settings, Orthanc servers, worklist templates, GNU Health.
    CONFIGURE = "configure"
    # Ask for an Orthanc sync sooner than the periodic one. Open to every
    # account, including the role-less account whose token Orthanc's push
    # script holds: it reveals nothing and changes nothing but timing.
    WAKE_SYNC = "wake_sync"


#: ``None``: every signed-in person, whatever their roles.
EVERYONE: frozenset[Role] | None = None
_STAFF = frozenset({Role.PHYSICIAN, Role.TECHNOLOGIST, Role.RADIOLOGIST})

PERMISSIONS: dict[Action, frozenset[Role] | None] = {
    Action.OWN_ACCOUNT: EVERYONE,
    Action.VIEW: _STAFF,
    Action.EDIT_PATIENTS: frozenset({Role.PHYSICIAN, Role.TECHNOLOGIST}),
    Action.ORDER: frozenset({Role.PHYSICIAN}),
    Action.REPORT: frozenset({Role.RADIOLOGIST}),
    Action.PERFORM: frozenset({Role.TECHNOLOGIST}),
    Action.LINK_STUDIES: _STAFF,
    Action.RETRY_SYNC: _STAFF,
    Action.DELETE_IMAGES: frozenset(),
    Action.MANAGE_USERS: frozenset(),
    Action.MANAGE_CATALOG: frozenset(),
    Action.CONFIGURE: frozenset(),
    Action.WAKE_SYNC: EVERYONE,
}


def allowed(roles: Iterable[Role], action: Action | str) -> bool:
    """Whether a person with ``roles`` may do ``action``. An unknown action
    name raises ``ValueError``: a typo in a template must not hide a button
    (or show one) silently."""
    wanted = PERMISSIONS[Action(action)]
    mine = set(roles)
    if wanted is None:
        return True
    return Role.ADMIN in mine or bool(wanted & mine)


def roles_for(action: Action | str) -> frozenset[Role]:
    """The roles that may do ``action`` (administrators always included)."""
    wanted = PERMISSIONS[Action(action)]
    every = frozenset(Role)
    return every if wanted is None else wanted | {Role.ADMIN}
