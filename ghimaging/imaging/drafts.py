"""Autosaved report drafts: what a radiologist has typed on the reporting
desk and not yet saved, one per request and user.

A draft is never a result: it is only offered back on the desk (to the
same user) and removed once that user saves the result. Another user's
draft is only named ("Dr X has an unsaved draft"), never shown as yours.
Nothing here commits: the endpoint does, once."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import ImagingRequest, ReportDraft, User
from ..models._time import utcnow
from .errors import TransitionError, ValidationError

#: The report field's own limit (forms.ResultForm.report).
MAX_CHARS = 100_000


def mine(req: ImagingRequest, user: User) -> ReportDraft | None:
    return db.session.scalar(select(ReportDraft).where(ReportDraft.request_id == req.id,
                                                       ReportDraft.user_id == user.id))


def others(req: ImagingRequest, user: User) -> list[ReportDraft]:
    """Other people's drafts of this request, newest first."""
    return list(db.session.scalars(
        select(ReportDraft).where(ReportDraft.request_id == req.id, ReportDraft.user_id != user.id)
        .order_by(ReportDraft.saved_at.desc())))


def save(req: ImagingRequest, user: User, text: object) -> ReportDraft | None:
    """Keep ``text`` as the user's draft of ``req``; empty text removes the
    draft (returns None). A final result takes no more drafts."""
    if not isinstance(text, str):
        raise ValidationError({"text": "The draft must be text."})
    if len(text) > MAX_CHARS:
        raise ValidationError({"text": f"The draft is longer than {MAX_CHARS:,} characters."})
    if req.result is not None and req.result.is_final:
        raise TransitionError("This result is final; drafts are no longer kept.", state=req.state)
    draft = mine(req, user)
    if not text.strip():
        if draft is not None:
            db.session.delete(draft)
            db.session.flush()
        return None
    if draft is None:
        draft = ReportDraft(request_id=req.id, user_id=user.id)
        db.session.add(draft)
    draft.text = text
    draft.saved_at = utcnow()
    try:
        db.session.flush()
    except IntegrityError:
        # The same user's other save (the page's pagehide beside a debounced
        # one) made the row between our look-up and this insert: write into it.
        db.session.rollback()
        draft = mine(req, user)
        if draft is None:
            raise
        draft.text, draft.saved_at = text, utcnow()
        db.session.flush()
    return draft


def clear(req: ImagingRequest, user: User) -> None:
    """The user saved the result: their draft is spent."""
    db.session.execute(delete(ReportDraft).where(ReportDraft.request_id == req.id,
                                                 ReportDraft.user_id == user.id))
