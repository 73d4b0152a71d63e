"""GET /healthz against the real parts: a real Orthanc, stopped and
started; a worklist folder that cannot take files; a database that is not
there; GNU Health's outbox with a failed item."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ghimaging import create_app
from ghimaging.extensions import db
from ghimaging.models._time import utcnow


def healthz(app):
    r = app.test_client().get("/healthz")
    return r.status_code, r.get_json(), r


def test_a_fresh_instance_is_healthy_and_needs_no_sign_in(app):
    status, body, r = healthz(app)
    assert status == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["orthanc"] == []
    assert body["checks"]["worklist_folder"] == {"ok": True, "configured": True}
    assert body["checks"]["gnuhealth"] == {"ok": True, "enabled": False}
    assert "Set-Cookie" not in r.headers
    assert r.headers["Cache-Control"] == "no-store"


def test_a_synced_orthanc_is_ok_and_a_stopped_one_fails_without_giving_secrets(app, orthanc, orthanc_row):
    orthanc_row.last_sync_at = utcnow()
    db.session.commit()
    status, body, _ = healthz(app)
    assert status == 200, body
    [entry] = body["checks"]["orthanc"]
    assert entry["ok"] is True and entry["reachable"] is True and entry["label"] == "Main"
    assert 0 <= entry["sync_lag_seconds"] < 60

    orthanc.kill()
    status, body, r = healthz(app)
    assert status == 503 and body["status"] == "fail" and body["failed"] == ["orthanc"]
    [entry] = body["checks"]["orthanc"]
    assert entry["reachable"] is False and entry["ok"] is False
    raw = r.get_data(as_text=True)
    for secret in (orthanc.password, orthanc.username, orthanc.url, str(orthanc.http_port)):
        assert secret not in raw


def test_a_sync_that_lags_fails_although_orthanc_answers(app, orthanc, orthanc_row):
    app.config["ORTHANC_SYNC_INTERVAL"] = 60
    orthanc_row.last_sync_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    status, body, _ = healthz(app)
    assert status == 503 and body["failed"] == ["orthanc"]
    [entry] = body["checks"]["orthanc"]
    assert entry["reachable"] is True and entry["sync_lag_seconds"] >= 3600
    assert "more than 300 s" in entry["problem"]


def test_a_worklist_folder_that_takes_no_file_fails(app, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    app.config["WORKLIST_DIR"] = str(blocker / "worklists")
    status, body, _ = healthz(app)
    assert status == 503 and body["failed"] == ["worklist_folder"]
    assert body["checks"]["worklist_folder"]["ok"] is False
    assert "cannot write worklist files" in body["checks"]["worklist_folder"]["problem"]


def test_a_database_that_is_not_there_is_a_503_not_a_500(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing-folder' / 'db.sqlite'}"
    broken = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": url, "TESTING": True})
    r = broken.test_client().get("/healthz")
    assert r.status_code == 503
    body = json.loads(r.get_data(as_text=True))
    assert body["failed"] == ["database"] and "orthanc" not in body["checks"]
    assert "missing-folder" not in r.get_data(as_text=True)


def test_failed_gnuhealth_outbox_items_fail_the_check(app, create_request):
    from ghimaging.models.gnuhealth import GnuHealthConfig, OutboxItem, OutboxState

    req = create_request(submit=True)  # before GNU Health is on: no outbox item of its own
    db.session.add(GnuHealthConfig(id=1, enabled=True, url="http://gh.invalid:8000/", database="health",
                                   username="u"))
    db.session.add_all([
        OutboxItem(kind="request", request_id=req.id, idempotency_key="a", state=OutboxState.PENDING.value),
        OutboxItem(kind="request", request_id=req.id, idempotency_key="b", state=OutboxState.FAILED.value,
                   last_error="secret-bearing text from the remote"),
    ])
    db.session.commit()
    status, body, r = healthz(app)
    assert status == 503 and body["failed"] == ["gnuhealth"]
    gh = body["checks"]["gnuhealth"]
    assert (gh["enabled"], gh["outbox_pending"], gh["outbox_failed"]) == (True, 1, 1)
    assert gh["oldest_pending_seconds"] is not None
    assert "secret-bearing" not in r.get_data(as_text=True) and "gh.invalid" not in r.get_data(as_text=True)


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_only_get_is_answered(app, method):
    assert getattr(app.test_client(), method)("/healthz").status_code == 405
