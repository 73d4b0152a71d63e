"""The states of an imaging request and the one way to move between them.

draft -> requested -> done, and cancelled from draft or requested (GNU
Health's states). The rule for results, kept here: writing a result does
not close the request (its result is *preliminary* and the request stays
``requested``); finalising the result closes it (``complete``: done). A
request with a result, preliminary or final, can no longer be cancelled or
edited: the report answers the order as it was. What people see on pages
(scheduled, images received, preliminary, final) is derived from these
states in :mod:`.progress`.

A move is
a conditional UPDATE inside the caller's transaction, so two people acting
at once cannot both pass the check; the caller commits.

:data:`request_changed` is sent inside the transaction that makes the
change: its receivers (the worklist file, the GNU Health outbox) add their
part to it, the caller's one commit stores it all, and a rollback undoes it
all, files included (see :mod:`.effects`).
"""

from __future__ import annotations

from blinker import Namespace
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import ColumnElement, exists, select, update

from ..extensions import db
from ..models import ImagingRequest, RequestEvent, RequestState, Result, User
from ..models._time import utcnow
from .errors import TransitionError

S = RequestState

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[RequestState], RequestState]] = {
    "submit": (frozenset({S.DRAFT}), S.REQUESTED),
    "cancel": (frozenset({S.DRAFT, S.REQUESTED}), S.CANCELLED),
    "complete": (frozenset({S.REQUESTED}), S.DONE),
}
EDITABLE = frozenset({S.DRAFT, S.REQUESTED})

_signals = Namespace()
#: Sent when a request takes a new state or is edited, in the transaction
#: that does it; receivers (worklist files, GNU Health outbox) get
#: ``request=`` and ``action=`` and never commit.
request_changed = _signals.signal("request-changed")


def has_result(req: ImagingRequest) -> bool:
    return req.result is not None


def can(action: str, req: ImagingRequest) -> bool:
    if action == "cancel" and has_result(req):
        return False
    return req.state_enum in TRANSITIONS[action][0]


def editable(req: ImagingRequest) -> bool:
    """Its order may still be changed: draft or requested, and not reported."""
    return req.state_enum in EDITABLE and not has_result(req)


def check(action: str, req: ImagingRequest) -> None:
    """:class:`TransitionError` with the standard message unless ``req``
    may take ``action`` now."""
    allowed, _target = TRANSITIONS[action]
    current = req.state_enum
    if action == "cancel" and current in allowed and has_result(req):
        raise TransitionError(_("Request %(number)s has a result; it cannot be cancelled.",
                                number=req.accession_number), state=current.value)
    if current not in allowed:
        values = {"number": req.accession_number, "state": current.word,
                  "allowed": ", ".join(sorted(s.word for s in allowed))}
        refused = {
            "submit": _("Request %(number)s is %(state)s; it cannot be submitted (allowed from %(allowed)s).",
                        **values),
            "cancel": _("Request %(number)s is %(state)s; it cannot be cancelled (allowed from %(allowed)s).",
                        **values),
            "complete": _("Request %(number)s is %(state)s; it cannot be completed (allowed from %(allowed)s).",
                          **values),
        }
        raise TransitionError(refused[action], state=current.value)


def transition(req: ImagingRequest, action: str, user: User | None, note: str = "") -> None:
    """Move ``req`` by ``action`` and record who did it, or raise
    :class:`TransitionError`. When someone else moved it first, the
    transaction is rolled back (so the request can be read as it is now)."""
    check(action, req)
    allowed, target = TRANSITIONS[action]
    current = req.state_enum
    if req.id is not None:
        # A conditional UPDATE, so two people acting at once cannot both pass
        # the check (cancel in one tab, submit in another; cancel while a
        # result is being written: see :func:`claim_for_result`).
        conditions: list[ColumnElement[bool]] = [ImagingRequest.state.in_([s.value for s in allowed])]
        if action == "cancel":
            _wait_for_writers(req)
            conditions.append(_unreported())
        _conditional(req, conditions, state=target.value)
    req.state = target.value
    req.events.append(RequestEvent(user_id=user.id if user else None, action=action,
                                   from_state=current.value, to_state=target.value, note=note))


def hold_editable(req: ImagingRequest) -> None:
    """Claim ``req`` for an edit of its order: a conditional UPDATE that
    passes only while it is editable *in the database* (draft or requested,
    no result), so an edit and a result written at once cannot both pass."""
    _wait_for_writers(req)
    _conditional(req, [ImagingRequest.state.in_([s.value for s in EDITABLE]), _unreported()],
                 updated_at=utcnow())


def claim_for_result(req: ImagingRequest) -> None:
    """Claim ``req`` for its first result: a conditional UPDATE that passes
    only while it is requested in the database. A cancel committed a moment
    before fails it; a cancel after it waits for the row and then finds the
    result (:func:`transition`), so never a cancelled order with a report."""
    _conditional(req, [ImagingRequest.state == S.REQUESTED.value], updated_at=utcnow())


def _unreported() -> ColumnElement[bool]:
    return ~exists().where(Result.request_id == ImagingRequest.id)


def _wait_for_writers(req: ImagingRequest) -> None:
    """Lock the row first (PostgreSQL; SQLite has one writer anyway): the
    conditional UPDATE that follows then reads results committed by the
    writer it waited for (a re-checked UPDATE alone would not see them)."""
    db.session.execute(select(ImagingRequest.id).where(ImagingRequest.id == req.id).with_for_update())


def _conditional(req: ImagingRequest, conditions: list[ColumnElement[bool]], **values: object) -> None:
    res = db.session.execute(
        update(ImagingRequest).where(ImagingRequest.id == req.id, *conditions)
        .values(**values).execution_options(synchronize_session=False))
    if getattr(res, "rowcount", 1) != 1:
        db.session.rollback()
        db.session.refresh(req)
        now = _("reported") if has_result(req) and req.state_enum in EDITABLE else req.state_enum.word
        raise TransitionError(_("Request %(number)s was just changed by someone else; it is now %(state)s.",
                                number=req.accession_number, state=now), state=req.state)


def announce(req: ImagingRequest, action: str) -> None:
    """Tell the receivers of :data:`request_changed` (after the change is flushed)."""
    request_changed.send(req, request=req, action=action)
