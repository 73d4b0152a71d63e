"""Register an Orthanc idempotently: what the installer does for the
Orthanc it set up beside the app (``ghimaging orthanc add``).

Run again, it finds the server by its address and updates its credentials
instead of adding a second one; when the installer moved Orthanc to another
port, the caller names the old address and that row is updated. Either way
the server is checked for real first, by the same services as the Orthanc
page (:mod:`.servers`), and nothing is saved when the check fails.

The check runs before anything is written: Orthanc may be running our push
script already, and while its callback waits for the wake endpoint, every
REST request to Orthanc waits too (checked on 1.10.1). A check made inside
an open write transaction would keep the wake waiting for our lock while
we wait for Orthanc's.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import select

from ..extensions import db
from ..models import OrthancServer
from .client import check_url
from .servers import ServerError, add_server, apply_check, check_credentials, update_server

DEFAULT_LABEL = "This Orthanc"


@dataclass
class Registered:
    server: OrthancServer
    action: str  # "added" or "updated"


def _normal(url: str) -> str:
    try:
        return check_url(url)
    except ValueError as exc:
        raise ServerError(str(exc), "url") from None


def find_by_url(url: str) -> OrthancServer | None:
    """The server registered at ``url`` (compared as the page stores it)."""
    wanted = _normal(url)
    return next((s for s in db.session.scalars(select(OrthancServer).order_by(OrthancServer.id))
                 if s.url == wanted), None)


def _free_label(base: str) -> str:
    taken = {s.label.casefold() for s in db.session.scalars(select(OrthancServer))}
    label, n = base, 2
    while label.casefold() in taken:
        label, n = f"{base} {n}", n + 1
    return label


def register(*, url: str, username: str, password: str, label: str = "",
             replace_url: str = "") -> Registered:
    """Add the server at ``url``, or update the one already there (or at
    ``replace_url``) with these credentials (and ``label`` when given).
    Checked for real either way: :class:`.servers.CheckFailed` when Orthanc
    cannot be reached or refuses the credentials, other
    :class:`.servers.ServerError` for input that cannot be saved. Flushed;
    the caller commits (or rolls back on an error)."""
    existing = find_by_url(url) or (find_by_url(replace_url) if replace_url else None)
    if existing is None:
        server = add_server(label=label or _free_label(DEFAULT_LABEL), url=url, username=username,
                            password=password)
        return Registered(server, "added")
    try:
        result = check_credentials(_normal(url), username.strip(), password)
    except UnicodeError:  # what update_server would refuse: say it the same way
        raise ServerError(_("The username or password can only use Latin-1 characters (HTTP Basic "
                            "authentication cannot carry others)."), "password") from None
    update_server(existing, label=label or existing.label, url=url, username=username,
                  browser_url=existing.browser_url, password=password)
    apply_check(existing, result)
    existing.last_error = ""
    db.session.flush()
    return Registered(existing, "updated")
