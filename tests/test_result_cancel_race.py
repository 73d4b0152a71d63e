"""A cancel (or an edit of the order) and a first result at the same moment:
exactly one wins, in the database, never a cancelled order with a report.

Each race runs the other party in its own thread with its own session (as a
second worker would), on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import select, text

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.imaging.workflow import TransitionError
from ghimaging.models import ImagingRequest, Result, User


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician")


@pytest.fixture
def rad(make_user):
    return make_user("rad", "radiologist")


@pytest.fixture
def requested(create_request, doc):
    req = create_request(user=doc, physician=doc, submit=True)
    db.session.commit()
    return req


def _in_thread(app, fn: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with app.app_context():
                fn()
                db.session.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            with app.app_context():
                db.session.remove()

    return threading.Thread(target=run, daemon=True), errors


def _write_result(req_id: int, rad_id: int) -> Callable[[], None]:
    def fn() -> None:
        req = db.session.get(ImagingRequest, req_id)
        rad = db.session.get(User, rad_id)
        assert req is not None and rad is not None
        workflow.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report="Fracture.")
    return fn


def _cancel(req_id: int, user_id: int) -> Callable[[], None]:
    def fn() -> None:
        req = db.session.get(ImagingRequest, req_id)
        assert req is not None
        workflow.cancel(req, db.session.get(User, user_id), "Patient left")
    return fn


def _stored(req_id: int) -> tuple[str, int]:
    db.session.rollback()
    state = db.session.scalar(select(ImagingRequest.state).where(ImagingRequest.id == req_id))
    results = len(db.session.scalars(select(Result.id).where(Result.request_id == req_id)).all())
    assert state is not None
    return state, results


def _stale(req: ImagingRequest) -> ImagingRequest:
    """``req`` as this worker read it: requested and without a result."""
    assert req.state == "requested" and req.result is None
    return req


def test_a_result_after_a_cancel_committed_meanwhile_is_refused(app, requested, doc, rad):
    req = _stale(requested)
    t, errors = _in_thread(app, _cancel(req.id, doc.id))
    t.start()
    t.join(60)
    assert not errors, errors
    with pytest.raises(TransitionError):
        workflow.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report="Fracture.")
    assert _stored(req.id) == ("cancelled", 0)


def test_a_cancel_after_a_result_committed_meanwhile_is_refused(app, requested, doc, rad):
    req = _stale(requested)
    t, errors = _in_thread(app, _write_result(req.id, rad.id))
    t.start()
    t.join(60)
    assert not errors, errors
    with pytest.raises(TransitionError, match="reported"):
        workflow.cancel(req, doc, "Patient left")
    assert _stored(req.id) == ("requested", 1)


def test_an_edit_after_a_result_committed_meanwhile_is_refused(app, requested, doc, rad):
    req = _stale(requested)
    t, errors = _in_thread(app, _write_result(req.id, rad.id))
    t.start()
    t.join(60)
    assert not errors, errors
    with pytest.raises(TransitionError):
        workflow.update_request(req, user=doc, physician=doc, urgent=True, clinical_context="changed",
                                comment="", scheduled_at=None)
    db.session.rollback()
    assert db.session.scalar(select(ImagingRequest.urgent).where(ImagingRequest.id == req.id)) is False


def _waiting_on_a_lock() -> bool:
    if db.engine.dialect.name != "postgresql":
        return True  # SQLite: the cancel waits on the one writer's lock (busy timeout)
    with db.engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")))


def test_a_cancel_waiting_for_an_uncommitted_result_is_refused_when_it_commits(app, requested, doc, rad):
    """The result's transaction holds the request while the cancel starts:
    the cancel waits, then sees the result (PostgreSQL re-reads after the lock)."""
    req = _stale(requested)
    workflow.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report="Fracture.")
    t, errors = _in_thread(app, _cancel(req.id, doc.id))
    t.start()
    for _ in range(200):  # until the cancel waits for the result's row (not a timing assertion)
        if _waiting_on_a_lock():
            break
        time.sleep(0.05)
    assert t.is_alive(), errors  # it waited rather than passing or failing at once
    db.session.commit()
    t.join(60)
    assert len(errors) == 1 and isinstance(errors[0], TransitionError), errors
    assert _stored(req.id) == ("requested", 1)


def test_a_result_of_a_cancelled_request_is_never_finalised(app, requested, doc, rad):
    result = workflow.create_result(requested, rad, radiologist=rad, result_date=date(2024, 5, 2), report="x")
    db.session.commit()
    # as an older version or a direct database change could have left it
    db.session.execute(ImagingRequest.__table__.update().where(ImagingRequest.id == requested.id)
                       .values(state="cancelled"))
    db.session.commit()
    db.session.refresh(requested)
    with pytest.raises(TransitionError, match="cancelled"):
        workflow.finalise_result(result, rad)
    db.session.rollback()
    assert db.session.get(Result, result.id).finalised_at is None
