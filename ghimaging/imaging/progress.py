"""The state people see: the one home of what a request shows on every
page and list.

The request's own state machine (:mod:`.states`: draft -> requested ->
done, and cancelled) is GNU Health's and stays so; staff want to know where
the exam stands, which it alone cannot tell. The displayed state is derived
here from the request, its study links (``images_available``, kept in the
row by the linking) and its result:

========================  =================================================
draft                     ordered, not yet submitted
scheduled                 requested, waiting for the modality (no images)
images received           requested, a study is linked, no result yet
preliminary               a result is written and not final (the request
                          stays ``requested``: a preliminary report does
                          not close it)
final                     the result is final (finalising closes the
                          request: ``done``)
cancelled                 cancelled
========================  =================================================

A ``done`` request without a final result (closed in GNU Health, or by
the rule before results were preliminary first) shows what its result
says, or "final" when it has none: it is closed.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import ColumnElement, and_, exists, false, select, true

from ..models import ImagingRequest, RequestState, Result

if TYPE_CHECKING:
    from ..models import Result as ResultRow


class Progress(str, enum.Enum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    IMAGES = "images"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        """In the reader's language (the labels are lazy: defined at import)."""
        return str(_LABELS[self])

    @property
    def css(self) -> str:
        return f"progress-{self.value}"


_LABELS = {
    Progress.DRAFT: _l("Draft"),
    Progress.SCHEDULED: _l("Scheduled"),
    Progress.IMAGES: _l("Images received"),
    Progress.PRELIMINARY: _l("Preliminary"),
    Progress.FINAL: _l("Final"),
    Progress.CANCELLED: _l("Cancelled"),
}


def of(req: ImagingRequest) -> Progress:
    """What ``req`` shows (its result loaded with it on lists: see
    :func:`.queries.with_result`)."""
    state = req.state
    if state == RequestState.DRAFT.value:
        return Progress.DRAFT
    if state == RequestState.CANCELLED.value:
        return Progress.CANCELLED
    result: ResultRow | None = req.result
    if result is not None:
        return Progress.FINAL if result.finalised_at is not None else Progress.PRELIMINARY
    if state == RequestState.DONE.value:
        return Progress.FINAL
    return Progress.IMAGES if req.images_available else Progress.SCHEDULED


def no_result() -> ColumnElement[bool]:
    """Requests with no result yet (the start page's queues use it too)."""
    return ~exists().where(Result.request_id == ImagingRequest.id)


def condition(progress: Progress) -> ColumnElement[bool]:
    """The SQL twin of :func:`of`: requests showing ``progress`` (a list
    filter; the queues use narrower indexed forms of the same rule)."""
    S = RequestState
    state = ImagingRequest.state
    if progress is Progress.DRAFT:
        return state == S.DRAFT.value
    if progress is Progress.CANCELLED:
        return state == S.CANCELLED.value
    open_or_done = state.in_([S.REQUESTED.value, S.DONE.value])
    if progress is Progress.PRELIMINARY:
        return and_(open_or_done, ImagingRequest.id.in_(
            select(Result.request_id).where(Result.finalised_at.is_(None))))
    if progress is Progress.FINAL:
        return and_(open_or_done, ~ImagingRequest.id.in_(
            select(Result.request_id).where(Result.finalised_at.is_(None))),
            (state == S.DONE.value) | ImagingRequest.id.in_(
                select(Result.request_id).where(Result.finalised_at.is_not(None))))
    images = true() if progress is Progress.IMAGES else false()
    return and_(state == S.REQUESTED.value, ImagingRequest.images_available == images, no_result())
