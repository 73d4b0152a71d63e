"""The outbox: every change GNU Health must hear about is a row, written in
the same transaction as the change itself (a flush listener), so that
nothing is lost when GNU Health is down or the process stops.

Sending is ``worker.step()`` (one item, with the transactions that make it
safe) and ``worker.drain()``; the pieces they are made of live here and
only change the session. Items of one request go in order (a result waits
for its request); a failing item is retried with a growing wait, and marked
failed after ``GNUHEALTH_MAX_ATTEMPTS`` or at once when waiting cannot help
(wrong password, missing module, data GNU Health refuses). Several
processes may drain at once: an item is claimed by a conditional UPDATE.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app, has_app_context
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, UOWTransaction

from ..exceptions import Conflict, NotFound
from ..extensions import db
from ..models import (
    GnuHealthConfig,
    ImagingRequest,
    LinkKind,
    OutboxItem,
    OutboxKind,
    OutboxState,
    Result,
    ResultAddendum,
)
from ..models._time import utcnow
from ..querytools import rowcount
from . import links, push
from .remote import Remote

log = logging.getLogger(__name__)

CLAIM_SECONDS = 300  # an item being sent is hidden this long from other processes
#: Set by the outbox when it has work; the background loop waits on it.
wake = threading.Event()
# A session flag: the change is an import from GNU Health (nothing to send back).
IMPORTING = "gnuhealth_importing"


def key_for(kind: OutboxKind, req: ImagingRequest) -> str:
    """A label saying what a retry looks up in GNU Health before creating
    anything: the request by its order line (``request_line``, our
    accession number, see ``push.request_key``), the result by that
    request. The look-ups themselves are made by ``push`` from the request
    as it is then; this stored string is for people reading the outbox."""
    if kind is OutboxKind.REQUEST:
        return f"request_line={push.request_key(req)}"
    return f"result of request_line={push.request_key(req)}"


def enqueue(kind: OutboxKind, req: ImagingRequest, reason: str, session: Session | None = None) -> OutboxItem:
    """Add an item to the session (committed with the change that made it)."""
    item = OutboxItem(kind=kind.value, request=req, idempotency_key=key_for(kind, req), reason=reason[:32],
                      state=OutboxState.PENDING.value, next_try_at=utcnow())
    (session or db.session).add(item)
    wake.set()
    return item


# -- writing items with the change ---------------------------------------------------

_WATCHED = ("state", "urgent", "comment", "clinical_context", "requesting_physician_id")


def _sync_enabled(session: Session) -> bool:
    if not has_app_context() or session.info.get(IMPORTING):
        return False
    with session.no_autoflush:
        cfg = session.get(GnuHealthConfig, 1)
    return bool(cfg is not None and cfg.enabled and cfg.configured)


def _changed(obj: object, names: Iterable[str]) -> list[str]:
    from sqlalchemy import inspect

    state = inspect(obj)
    return [n for n in names if state.attrs[n].history.has_changes()]


def _before_flush(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    todo: list[tuple[OutboxKind, ImagingRequest, str]] = []
    for obj in list(session.new):
        if isinstance(obj, ImagingRequest):
            todo.append((OutboxKind.REQUEST, obj, "create"))
        elif isinstance(obj, ResultAddendum) and obj.result is not None and obj.result.is_final:
            todo.append((OutboxKind.RESULT, obj.result.request, "addendum"))
    for obj in list(session.dirty):
        if isinstance(obj, ImagingRequest) and obj not in session.new:
            changed = _changed(obj, _WATCHED)
            if changed:
                todo.append((OutboxKind.REQUEST, obj, obj.state if "state" in changed else "edit"))
        elif isinstance(obj, Result) and _changed(obj, ["finalised_at"]) and obj.finalised_at is not None:
            todo.append((OutboxKind.RESULT, obj.request, "finalise"))
    if not todo or not _sync_enabled(session):
        return
    with session.no_autoflush:
        for kind, req, reason in todo:
            if kind is OutboxKind.REQUEST and req.id is not None and links.get_origin(req.id) == "pulled":
                continue  # GNU Health's own request: only its result goes back
            if not _waiting(session, kind, req):
                enqueue(kind, req, reason, session)


def _waiting(session: Session, kind: OutboxKind, req: ImagingRequest) -> bool:
    """An item for the same request and kind that nobody has tried or taken
    yet: it will send the request as it is then, this change included."""
    for obj in session.new:
        if isinstance(obj, OutboxItem) and obj.request is req and obj.kind == kind.value:
            return True
    request_id: int | None = req.id  # None until the request is flushed
    if request_id is None:
        return False
    return session.scalar(select(OutboxItem.id).where(
        OutboxItem.request_id == request_id, OutboxItem.kind == kind.value,
        OutboxItem.state == OutboxState.PENDING.value, OutboxItem.attempts == 0,
        OutboxItem.next_try_at <= utcnow()).limit(1)) is not None


def listen() -> None:
    """Watch every session of the application (called once by init_app)."""
    from flask_sqlalchemy.session import Session as FlaskSession

    if not event.contains(FlaskSession, "before_flush", _before_flush):
        event.listen(FlaskSession, "before_flush", _before_flush)


# -- sending ----------------------------------------------------------------------------

@dataclass
class DrainSummary:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    unreachable: bool = False

    def line(self) -> str:
        text = f"outbox: {self.sent} sent, {self.retrying} to retry, {self.failed} failed"
        return text + (f" ({self.errors[-1]})" if self.errors else "")


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to GNUHEALTH_RETRY_MAX_SECONDS."""
    cap = int(current_app.config["GNUHEALTH_RETRY_MAX_SECONDS"])
    return timedelta(seconds=min(cap, 30 * 2 ** max(0, attempts - 1)))


def blocked(item: OutboxItem) -> bool:
    """Whether an older item must go first. Of the same request: any older
    pending one (it may be in flight in another process this very moment:
    two sends of one request at once would make two requests there), and
    an older failed one of another kind (a result waits for its request);
    an older failed one of the same kind is folded into this one. Of
    another request of the same patient, while that patient is not linked
    to GNU Health yet: any older pending one (it may be creating the
    patient there)."""
    older = db.session.scalars(select(OutboxItem.id).where(
        OutboxItem.request_id == item.request_id, OutboxItem.id < item.id,
        OutboxItem.state != OutboxState.SENT.value,
        (OutboxItem.state == OutboxState.PENDING.value) | (OutboxItem.kind != item.kind)).limit(1)).first()
    if older is not None:
        return True
    patient_id = item.request.patient_id
    if links.remote_id(LinkKind.PATIENT, patient_id) is not None:
        return False
    same_patient = select(ImagingRequest.id).where(ImagingRequest.patient_id == patient_id)
    return db.session.scalars(select(OutboxItem.id).where(
        OutboxItem.request_id.in_(same_patient), OutboxItem.request_id != item.request_id,
        OutboxItem.id < item.id, OutboxItem.state == OutboxState.PENDING.value).limit(1)).first() is not None


def due(now: datetime | None = None, limit: int = 50) -> list[OutboxItem]:
    now = now or utcnow()
    return list(db.session.scalars(select(OutboxItem).where(
        OutboxItem.state == OutboxState.PENDING.value, OutboxItem.next_try_at <= now)
        .order_by(OutboxItem.id).limit(limit)))


def claim(item: OutboxItem, now: datetime) -> bool:
    """Hide the item from other processes for ``CLAIM_SECONDS``; False
    when another process took it first. The caller commits at once."""
    res = db.session.execute(update(OutboxItem).where(
        OutboxItem.id == item.id, OutboxItem.state == OutboxState.PENDING.value,
        OutboxItem.next_try_at == item.next_try_at)
        .values(next_try_at=now + timedelta(seconds=CLAIM_SECONDS)).execution_options(synchronize_session=False))
    return rowcount(res) == 1


def _same(item: OutboxItem) -> list[OutboxItem]:
    """Older unsent items of the same request and kind: this send covers them."""
    return list(db.session.scalars(select(OutboxItem).where(
        OutboxItem.request_id == item.request_id, OutboxItem.kind == item.kind, OutboxItem.id < item.id,
        OutboxItem.state != OutboxState.SENT.value)))


def send(item: OutboxItem, remote: Remote, cfg: GnuHealthConfig) -> None:
    """Do what the item says (raises GnuHealthError)."""
    req = item.request
    if item.kind == OutboxKind.REQUEST.value:
        push.push_request(remote, cfg, req)
    else:
        push.push_result(remote, cfg, req, Path(current_app.config["RESULT_IMAGE_DIR"]))


def record_sent(item: OutboxItem, summary: DrainSummary) -> None:
    """The item, and the older unsent ones of its request and kind it
    covered, are sent."""
    now = utcnow()
    for older in [item, *_same(item)]:
        older.state, older.sent_at = OutboxState.SENT.value, now
        older.last_error, older.error_code = "", ""
    item.attempts += 1
    summary.sent += 1


def record_failure(item: OutboxItem, exc: Exception, summary: DrainSummary) -> None:
    """Another try later when waiting can help and attempts are left, else failed."""
    transient = bool(getattr(exc, "transient", False)) or (isinstance(exc, OSError) and not isinstance(
        exc, FileNotFoundError))
    item.attempts += 1
    item.last_error = str(exc)[:2000]
    item.error_code = str(getattr(exc, "code", type(exc).__name__))[:32]
    summary.errors.append(item.last_error)
    if getattr(exc, "code", "") in ("unreachable", "timeout"):
        summary.unreachable = True
    if transient and item.attempts < int(current_app.config["GNUHEALTH_MAX_ATTEMPTS"]):
        item.next_try_at = utcnow() + backoff(item.attempts)
        summary.retrying += 1
        log.warning("GNU Health push %s (%s) will be retried: %s", item.id, item.kind, item.last_error)
    else:
        item.state = OutboxState.FAILED.value
        summary.failed += 1
        log.error("GNU Health push %s (%s) failed: %s", item.id, item.kind, item.last_error)


def retry(item_id: int) -> OutboxItem:
    """A failed (or waiting) item goes again now, its count of attempts reset."""
    item = db.session.get(OutboxItem, item_id)
    if item is None:
        raise NotFound(_("No outbox item %(id)s.", id=item_id))
    if item.state == OutboxState.SENT.value:
        raise Conflict(_("This item was sent already."), code="already_sent")
    item.state, item.attempts, item.next_try_at = OutboxState.PENDING.value, 0, utcnow()
    wake.set()
    return item


def retry_request(req: ImagingRequest) -> int:
    """Every unsent item of a request goes again now."""
    items = list(db.session.scalars(select(OutboxItem).where(
        OutboxItem.request_id == req.id, OutboxItem.state != OutboxState.SENT.value)))
    for item in items:
        item.state, item.attempts, item.next_try_at = OutboxState.PENDING.value, 0, utcnow()
    wake.set()
    return len(items)


def listing(state: str | None = None, limit: int = 200) -> list[OutboxItem]:
    stmt = select(OutboxItem).order_by(OutboxItem.id.desc()).limit(limit)
    if state:
        stmt = stmt.where(OutboxItem.state == state)
    return list(db.session.scalars(stmt))


def counts() -> dict[str, int]:
    from sqlalchemy import func

    rows = db.session.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all()
    out = {s.value: 0 for s in OutboxState}
    out.update({state: n for state, n in rows})
    return out
