"""What a request's page, the request JSON and the lists say about its
GNU Health sync: linked to which request there, synced, pending or failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select

from ..extensions import db
from ..models import GnuHealthLink, ImagingRequest, LinkKind, OutboxItem, OutboxState
from . import links


@dataclass
class SyncStatus:
    request_id: int | None      # GNU Health's request id, when linked
    state: str                  # synced, pending or failed
    error: str                  # the last error of an unsent item, or what GNU Health did (deleted, closed)
    origin: str                 # pulled (imported from GNU Health) or pushed
    remote_label: str
    next_try_at: datetime | None
    attempts: int

    def as_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "state": self.state, "error": self.error or None}


def of_request(req: ImagingRequest) -> SyncStatus | None:
    """None when the request is neither linked to GNU Health nor waiting to be sent."""
    link = links.get(LinkKind.REQUEST, req.id)
    unsent = list(db.session.scalars(select(OutboxItem).where(
        OutboxItem.request_id == req.id, OutboxItem.state != OutboxState.SENT.value).order_by(OutboxItem.id)))
    if link is None and not unsent:
        return None
    failed = [i for i in unsent if i.state == OutboxState.FAILED.value]
    if failed:
        state, item = "failed", failed[0]
    elif unsent:
        state, item = "pending", unsent[0]
    else:
        state, item = "synced", None
    error = item.last_error if item is not None else ""
    if not error and link is not None and link.problem:
        error = link.problem
    return SyncStatus(request_id=link.remote_id if link else None, state=state, error=error,
                      origin=link.origin if link else "pushed", remote_label=link.remote_label if link else "",
                      next_try_at=item.next_try_at if item is not None and state == "pending" else None,
                      attempts=item.attempts if item is not None else 0)


def request_json(req: ImagingRequest) -> dict[str, Any] | None:
    """The request JSON's ``gnuhealth`` field (null when not linked)."""
    status = of_request(req)
    return status.as_json() if status is not None else None


def find_by_remote_request(remote_id: int) -> ImagingRequest | None:
    """The request imported from (or pushed as) GNU Health's request ``remote_id``."""
    link = db.session.scalar(select(GnuHealthLink).where(GnuHealthLink.kind == LinkKind.REQUEST.value,
                                                         GnuHealthLink.remote_id == remote_id))
    if link is None or link.local_id is None:
        return None
    return db.session.get(ImagingRequest, link.local_id)


def patient_link(patient_id: int) -> GnuHealthLink | None:
    return links.get(LinkKind.PATIENT, patient_id)


def import_problems(limit: int = 100) -> list[GnuHealthLink]:
    """GNU Health requests that could not be imported, or changed there."""
    return list(db.session.scalars(select(GnuHealthLink).where(
        GnuHealthLink.kind == LinkKind.REQUEST.value, GnuHealthLink.problem != "")
        .order_by(GnuHealthLink.synced_at.desc()).limit(limit)))


def request_filter(remote_id: int) -> ColumnElement[bool]:
    """A WHERE condition on ImagingRequest for ``?gnuhealth_request_id=N``:
    the request linked to GNU Health's request N (none when there is none)."""
    return ImagingRequest.id.in_(select(GnuHealthLink.local_id).where(
        GnuHealthLink.kind == LinkKind.REQUEST.value, GnuHealthLink.remote_id == remote_id,
        GnuHealthLink.local_id.is_not(None)))
