"""Read-side queries for request lists: indexed, no N+1 (patient and test are
joined in the same SELECT)."""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select, union
from sqlalchemy.orm import lazyload, selectinload

from ..models import ImagingRequest, ImagingTest, Patient, RequestState, Result
from ..models.patients import fold
from ..querytools import contains

TABS = ["draft", "requested", "done", "cancelled", "all"]


def request_list(state: str = "all", q: str = "", patient_id: int | None = None) -> Select[ImagingRequest]:
    # The result comes in one more SELECT per page: each row shows the
    # state people see (imaging/progress.py), which needs it.
    stmt = select(ImagingRequest).options(lazyload(ImagingRequest.requesting_physician),
                                          selectinload(ImagingRequest.result).options(lazyload(Result.request)))
    if state in {s.value for s in RequestState}:
        stmt = stmt.where(ImagingRequest.state == state)
    if patient_id is not None:
        stmt = stmt.where(ImagingRequest.patient_id == patient_id)
    q = (q or "").strip()[:200]
    if q:
        # A UNION of indexed lookups instead of an OR tested on every row of
        # the state's range: the matching ids drive the query.
        matches = union(
            select(ImagingRequest.id).where(ImagingRequest.accession_number.in_({q, q.upper()})),
            select(ImagingRequest.id).where(ImagingRequest.order_number.in_({q, q.upper()})),
            select(ImagingRequest.id).where(ImagingRequest.patient_id.in_(select(Patient.id).where(or_(
                Patient.puid == q, contains(Patient.search_key, fold(q)))))),
            select(ImagingRequest.id).where(ImagingRequest.test_id.in_(select(ImagingTest.id).where(or_(
                func.lower(ImagingTest.code) == q.lower(), contains(func.lower(ImagingTest.name), q.lower()))))),
        )
        stmt = stmt.where(ImagingRequest.id.in_(select(matches.subquery().c[0])))
    return stmt.order_by(ImagingRequest.urgent.desc(), ImagingRequest.id.desc())


def state_counts() -> Select[str, int]:
    return select(ImagingRequest.state, func.count()).group_by(ImagingRequest.state)
