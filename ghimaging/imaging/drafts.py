"""Autosaved report drafts: what a radiologist has typed on the reporting
desk and not yet saved, one per request and user.

A draft is never a result: it is only offered back on the desk (to the
same user) and removed once that user saves the result. Another user's
draft is only named ("Dr X has an unsaved draft"), never shown as yours.

A draft records the version of the saved report it was typed over (the
result's ``updated_at``; None before there is a result). Only a draft of
the current version goes back into the editor: one typed before someone's
later save is offered to read and copy, never put over the saved report
(that is how another radiologist's finding would be silently lost). An
autosave typed over an older version is refused, so a save in flight when
the result is saved leaves nothing behind to come back.
Nothing here commits: the endpoint does, once."""

from __future__ import annotations

from datetime import datetime

from flask_babel import format_number  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import gettext as _
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import ImagingRequest, ReportDraft, RequestEvent, Result, User
from ..models._time import utcnow
from .errors import TransitionError, ValidationError

#: The report field's own limit (forms.ResultForm.report).
MAX_CHARS = 100_000


def version_of(result: Result | None) -> str:
    """The saved report's version as the desk's form and autosave carry it:
    "" before there is a result."""
    return "" if result is None else result.updated_at.isoformat()


def current(draft: ReportDraft, result: Result | None) -> bool:
    """Was ``draft`` typed over the report as saved now (so it may go back
    into the editor)? A draft from before the result existed, or before its
    last save, is not."""
    if result is None:
        return draft.based_on is None
    return draft.based_on is not None and draft.based_on == result.updated_at


def last_saver(result: Result) -> User | None:
    """Who saved the result last (its request's newest result event)."""
    event = db.session.scalar(
        select(RequestEvent).where(RequestEvent.request_id == result.request_id,
                                   RequestEvent.action.in_(("result written", "result edited")))
        .order_by(RequestEvent.id.desc()).limit(1))
    return event.user if event is not None else None


def mine(req: ImagingRequest, user: User) -> ReportDraft | None:
    return db.session.scalar(select(ReportDraft).where(ReportDraft.request_id == req.id,
                                                       ReportDraft.user_id == user.id))


def others(req: ImagingRequest, user: User) -> list[ReportDraft]:
    """Other people's drafts of this request, newest first."""
    return list(db.session.scalars(
        select(ReportDraft).where(ReportDraft.request_id == req.id, ReportDraft.user_id != user.id)
        .order_by(ReportDraft.saved_at.desc())))


def save(req: ImagingRequest, user: User, text: object, version: object) -> ReportDraft | None:
    """Keep ``text`` as the user's draft of ``req``, typed over the saved
    report's ``version`` (:func:`version_of`, from the desk's form); empty
    text removes the draft (returns None). A final result takes no more
    drafts, and a draft typed over an older version than the saved one is
    refused (TransitionError): someone (or this user, a moment ago) saved
    the report since the page was opened."""
    if not isinstance(text, str):
        raise ValidationError({"text": _("The draft must be text.")})
    if len(text) > MAX_CHARS:
        raise ValidationError({"text": _("The draft is longer than %(limit)s characters.", limit=format_number(MAX_CHARS))})
    result = req.result
    if result is not None and result.is_final:
        raise TransitionError(_("This result is final; drafts are no longer kept."), state=req.state)
    draft = mine(req, user)
    if not text.strip():
        if draft is not None:
            db.session.delete(draft)
            db.session.flush()
        return None
    if not isinstance(version, str):
        raise ValidationError({"version": _("Say which saved report the draft was typed over.")})
    if version != version_of(result):
        raise TransitionError(stale_message(result), state=req.state)
    based_on: datetime | None = None if result is None else result.updated_at
    if draft is None:
        draft = ReportDraft(request_id=req.id, user_id=user.id)
        db.session.add(draft)
    draft.text, draft.saved_at, draft.based_on = text, utcnow(), based_on
    try:
        db.session.flush()
    except IntegrityError:
        # The same user's other save (the page's pagehide beside a debounced
        # one) made the row between our look-up and this insert: write into it.
        db.session.rollback()
        draft = mine(req, user)
        if draft is None:
            raise
        draft.text, draft.saved_at, draft.based_on = text, utcnow(), based_on
        db.session.flush()
    return draft


def stale_message(result: Result | None) -> str:
    who = last_saver(result) if result is not None else None
    message: str
    if who:
        message = _("The report was saved by %(name)s after this page was opened; this text is not kept as a "
                    "draft. Copy it, then reload the page to see the saved report.", name=who.display_name)
    else:
        message = _("The report was saved after this page was opened; this text is not kept as a draft. "
                    "Copy it, then reload the page to see the saved report.")
    return message


def saved(result: Result, user: User) -> None:
    """The user saved ``result``: it is a new version (even with nothing
    changed, so an autosave from before the save is refused), and their
    draft is spent."""
    result.updated_at = utcnow()
    db.session.execute(delete(ReportDraft).where(ReportDraft.request_id == result.request_id,
                                                 ReportDraft.user_id == user.id))
    db.session.flush()
