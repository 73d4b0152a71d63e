"""Which local record is which GNU Health record (``gnuhealth_links``)."""

from __future__ import annotations

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import select

from ..exceptions import Conflict
from ..extensions import db
from ..models import GnuHealthLink, LinkKind
from ..models._time import utcnow


def get(kind: LinkKind, local_id: int) -> GnuHealthLink | None:
    return db.session.scalar(select(GnuHealthLink).where(GnuHealthLink.kind == kind.value,
                                                         GnuHealthLink.local_id == local_id))


def by_remote(kind: LinkKind, remote_id: int) -> GnuHealthLink | None:
    return db.session.scalar(select(GnuHealthLink).where(GnuHealthLink.kind == kind.value,
                                                         GnuHealthLink.remote_id == remote_id))


def remote_id(kind: LinkKind, local_id: int) -> int | None:
    link = get(kind, local_id)
    return link.remote_id if link else None


def put(kind: LinkKind, local_id: int | None, remote_id: int, *, origin: str, remote_state: str = "",
        label: str = "", problem: str = "") -> GnuHealthLink:
    """Record (or update) the link; added to the session, not committed."""
    link = by_remote(kind, remote_id)
    if link is None and local_id is not None:
        link = get(kind, local_id)
    if link is None:
        link = GnuHealthLink(kind=kind.value, remote_id=remote_id, origin=origin)
        db.session.add(link)
    link.local_id = local_id
    link.remote_id = remote_id
    if link.origin != "pulled":  # where a record came from does not change
        link.origin = origin
    if remote_state:
        link.remote_state = remote_state
    if label:
        link.remote_label = label[:200]
    link.problem = problem
    link.synced_at = utcnow()
    return link


def local_ids(kind: LinkKind, remote_ids: list[int]) -> dict[int, GnuHealthLink]:
    if not remote_ids:
        return {}
    rows = db.session.scalars(select(GnuHealthLink).where(GnuHealthLink.kind == kind.value,
                                                          GnuHealthLink.remote_id.in_(remote_ids)))
    return {r.remote_id: r for r in rows}


def get_origin(request_id: int) -> str | None:
    """How the request's link came to be ("pulled": imported from GNU Health)."""
    return db.session.scalar(select(GnuHealthLink.origin).where(GnuHealthLink.kind == LinkKind.REQUEST.value,
                                                                GnuHealthLink.local_id == request_id))


def map_test(test_id: int, remote_id: int | None) -> None:
    """Send the local test as GNU Health's test ``remote_id`` (None: by its
    code again). A GNU Health test is mapped to one local test at most."""
    taken = by_remote(LinkKind.TEST, remote_id) if remote_id else None
    if taken is not None and taken.local_id != test_id:
        raise Conflict(_("That GNU Health test is already mapped to another test."), code="test_mapped")
    current = get(LinkKind.TEST, test_id)
    if current is not None:
        db.session.delete(current)
        db.session.flush()
    if remote_id:
        put(LinkKind.TEST, test_id, remote_id, origin="manual")
    db.session.flush()
