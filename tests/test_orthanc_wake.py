"""The wake: ``POST /api/v1/orthanc/servers/<id>/wake`` records that a sync
is wanted and answers at once; the background loop (woken in this process,
or at its next tick elsewhere) syncs. Against a real Orthanc 1.10.1, with
pynetdicom as the modality."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from ghimaging.auth import service as auth
from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, OrthancServer, StudyLink
from ghimaging.models._time import utcnow
from ghimaging.orthanc import sync, wake
from ghimaging.orthanc import worker as orthanc_worker
from tests.support import dicomgen
from tests.support.orthanc import c_store

#: Far longer than any test: only a wake can make the loop sync.
NEVER = 3600


@pytest.fixture
def app_config():
    return {"ORTHANC_SYNC_INTERVAL": NEVER, "ORTHANC_RECONCILE_INTERVAL": 0}



def image_for(req: ImagingRequest) -> Dataset:
    """What a modality that kept the worklist's study UID sends for ``req``."""
    return dicomgen.make_instance(req.patient.puid, "Doe^Jane", study_uid=req.study_instance_uid,
                                  accession=req.accession_number, rows=16, cols=16)


def linked(req: ImagingRequest) -> bool:
    db.session.expire_all()
    return db.session.scalar(select(StudyLink).where(StudyLink.request_id == req.id)) is not None


def server(row_id: int) -> OrthancServer:
    db.session.expire_all()
    return db.session.get_one(OrthancServer, row_id)


def push_token() -> str:
    """A token of a role-less service account, as Orthanc's push holds."""
    account = auth.create_service_account("orthanc-push", "Orthanc push")
    token = auth.create_token(account, "push")
    db.session.commit()
    return token


def wake_call(client, server_id: int, token: str):
    return client.post(f"/api/v1/orthanc/servers/{server_id}/wake", headers={"Authorization": f"Bearer {token}"})


def test_a_stored_study_is_linked_within_seconds_of_a_wake_with_the_loop_running(
        app, orthanc, orthanc_row, create_request):
    req = create_request(submit=True)
    assert sync.run(orthanc_row.id).error == ""  # the first full sync, out of the way
    token = push_token()
    loop = orthanc_worker.start(app)
    assert loop is not None
    try:
        c_store(orthanc, image_for(req))
        r = wake_call(app.test_client(), orthanc_row.id, token)
        assert r.status_code == 202, r.get_json()
        # Generous bound for a loaded machine; the periodic sync is an hour
        # away, so only the wake can have made the loop sync at all.
        deadline = time.monotonic() + 60
        while not linked(req) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert linked(req), orthanc.log_tail()
        assert server(orthanc_row.id).sync_wanted_at is None  # answered, cleared
    finally:
        orthanc_worker.stop()


def test_a_wake_during_a_running_sync_causes_one_more_sync(app, orthanc, orthanc_row, create_request,
                                                           monkeypatch):
    """The window that matters: the sync has read /changes, a study arrives
    and its push wakes us before the sync ends. Clearing the wish then
    would leave the study to the periodic sync (an hour here)."""
    assert sync.run(orthanc_row.id).error == ""
    late = create_request(submit=True)
    wake.want_sync(orthanc_row.id)
    db.session.commit()
    real_run = sync.run
    calls = []

    def run_then_a_study_arrives(server_id, **kw):
        summary = real_run(server_id, **kw)
        calls.append(kw.get("mode"))
        if len(calls) == 1:  # after the first sync read everything it will read
            c_store(orthanc, image_for(late))
            wake.want_sync(server_id)  # the push of that study, as another request commits it
            db.session.commit()
        return summary

    monkeypatch.setattr(sync, "run", run_then_a_study_arrives)
    first = orthanc_worker.tick("test", NEVER, 0)
    assert [s.error for s in first] == [""]
    assert not linked(late)
    assert server(orthanc_row.id).sync_wanted_at is not None  # the second wish is kept
    second = orthanc_worker.tick("test", NEVER, 0)
    assert [s.error for s in second] == [""]
    assert linked(late)
    assert server(orthanc_row.id).sync_wanted_at is None
    assert orthanc_worker.tick("test", NEVER, 0) == []  # and nothing more until someone asks again
    assert calls == ["auto", "auto"]


def test_a_role_less_push_token_may_wake_but_reads_nothing(app, orthanc_row, client):
    token = push_token()
    headers = {"Authorization": f"Bearer {token}"}
    r = wake_call(client, orthanc_row.id, token)
    assert r.status_code == 202
    body = r.get_json()
    assert body["server_id"] == orthanc_row.id
    wanted = server(orthanc_row.id).sync_wanted_at
    assert wanted is not None and body["wanted_at"] == wake.epoch_ms(wanted)
    assert abs(body["wanted_at"] / 1000 - time.time()) < 3600  # milliseconds since 1970, not seconds
    for path in ("/api/v1/studies", "/api/v1/patients", "/api/v1/requests", "/api/v1/studies/unmatched",
                 "/api/v1/tests", f"/api/v1/orthanc/servers/{orthanc_row.id}"):
        got = client.get(path, headers=headers)
        assert (got.status_code, got.get_json()["error"]) == (403, "forbidden"), path
    assert client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync", headers=headers).status_code == 403
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # its own account


def test_staff_still_read_through_the_api(app, api, orthanc_row):
    """The VIEW rule for undeclared reads lets every role with VIEW through."""
    for role in ("physician", "technologist", "radiologist", "admin"):
        assert api(role).get("/api/v1/studies").status_code == 200, role


def test_waking_an_unknown_server_is_404(app, client):
    token = push_token()
    r = wake_call(client, 999_999, token)
    assert (r.status_code, r.get_json()["error"]) == (404, "not_found")


def test_waking_needs_a_token_and_no_csrf_token(app, orthanc_row, client):
    """CSRF is on for the pages (the form would be refused without its
    token); the API authenticates by bearer token, never by cookie."""
    assert app.config.get("WTF_CSRF_ENABLED", True)
    assert client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/wake").status_code == 401
    assert server(orthanc_row.id).sync_wanted_at is None
    r = wake_call(client, orthanc_row.id, push_token())  # no csrf_token anywhere
    assert r.status_code == 202


def test_the_wake_answers_while_orthanc_is_down(app, orthanc, orthanc_row, client):
    """It records the wish and never calls Orthanc: nothing about the
    server's health changes by waking it."""
    orthanc.kill()
    before = server(orthanc_row.id)
    error, failures = before.last_error, before.failures
    r = wake_call(client, orthanc_row.id, push_token())
    assert r.status_code == 202
    after = server(orthanc_row.id)
    assert (after.last_error, after.failures) == (error, failures)
    assert after.sync_wanted_at is not None


def test_a_wake_after_the_last_failure_cuts_the_backoff_once(app, orthanc_row):
    now = utcnow()
    row = server(orthanc_row.id)
    row.needs_full_sync = False
    row.last_sync_at = now
    row.failures, row.last_error_at, row.next_attempt_at = 3, now - timedelta(seconds=10), now + timedelta(seconds=300)
    row.sync_wanted_at = None
    assert orthanc_worker.due_mode(row, now, NEVER, 0) is None  # backing off
    row.sync_wanted_at = now - timedelta(seconds=20)  # asked before the failure: it waits too
    assert orthanc_worker.due_mode(row, now, NEVER, 0) is None
    row.sync_wanted_at = now - timedelta(seconds=5)  # asked after it: one attempt now
    assert orthanc_worker.due_mode(row, now, NEVER, 0) == "auto"
    row.failures, row.last_error_at, row.next_attempt_at = 0, None, None
    assert orthanc_worker.due_mode(row, now, NEVER, 0) == "auto"  # no failure: a wake is due at once
    row.sync_wanted_at = None
    assert orthanc_worker.due_mode(row, now, NEVER, 0) is None  # nothing asked, nothing due
    db.session.rollback()


def test_a_failed_sync_keeps_the_wish_for_after_the_backoff(app, orthanc, orthanc_row):
    assert sync.run(orthanc_row.id).error == ""
    wake.want_sync(orthanc_row.id)
    db.session.commit()
    orthanc.kill()
    ran = orthanc_worker.tick("test", NEVER, 0)
    assert len(ran) == 1 and ran[0].error
    row = server(orthanc_row.id)
    assert row.sync_wanted_at is not None
    assert orthanc_worker.tick("test", NEVER, 0) == []  # the backoff holds: the wish came before the failure
