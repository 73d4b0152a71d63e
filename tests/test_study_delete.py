"""Deleting a study or a series in a real Orthanc 1.10.1 from the study page:
admin only, with a confirmation that names the study, recorded in the audit
trail, the mirror rows and the links following at once; a study Orthanc
no longer has counts as deleted, and an Orthanc that refuses gives a clear
message and changes nothing."""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import (
    ImagingRequest,
    LinkEvent,
    OrthancPatient,
    OrthancSeries,
    OrthancServer,
    OrthancStudy,
    StudyLink,
)
from ghimaging.orthanc import sync
from tests.support import dicomgen


@pytest.fixture
def staff(make_user):
    return {"admin": make_user("boss", "admin", full_name="Ada Admin"),
            "doc": make_user("doc", "physician"), "tech": make_user("tech", "technologist"),
            "rad": make_user("rad", "radiologist")}


@pytest.fixture
def linked(app, orthanc, orthanc_row, upload, create_request, create_patient, staff):
    """A submitted request and its study (two series) in Orthanc, matched by
    accession number: (request, study row)."""
    patient = create_patient(puid="HOSP-77", family_name="Mbeki", given_name="Thandi")
    req = create_request(patient, submit=True, user=staff["doc"])
    study_uid = dicomgen.generate_uid()
    upload([dicomgen.make_instance("HOSP-77", "MBEKI^THANDI", study_uid, accession=req.accession_number,
                                   study_description="CHEST PA", series_number=n, rows=16, cols=16)
            for n in (1, 2)])
    assert sync.run(orthanc_row.id).error == ""
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.study_uid == study_uid))
    assert study.series_count == 2
    assert db.session.scalar(select(StudyLink).where(StudyLink.request_id == req.id)) is not None
    return req, study


def text(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def in_orthanc(orthanc, level: str, orthanc_id: str) -> bool:
    status = orthanc.session.get(f"{orthanc.url}/{level}/{orthanc_id}", timeout=30).status_code
    assert status in (200, 404), status
    return status == 200


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def delete(client, study, confirm=None, **kw):
    data = {} if confirm is False else {"confirm": study.study_uid if confirm is None else confirm}
    return client.post(f"/orthanc/studies/{study.id}/delete", data, token_from=f"/orthanc/studies/{study.id}", **kw)


# -- studies ------------------------------------------------------------------------------------

def test_admin_sees_a_delete_form_that_names_the_patient_and_the_study(app, linked, login):
    _req, study = linked
    page = text(login("boss").get(f"/orthanc/studies/{study.id}"))
    assert f'action="/orthanc/studies/{study.id}/delete"' in page
    assert f'name="confirm" value="{study.study_uid}"' in page
    assert "Delete the study CHEST PA of MBEKI, THANDI in Orthanc?" in page
    assert f'action="/orthanc/studies/{study.id}/delete"' not in login("doc").get(
        f"/orthanc/studies/{study.id}").get_data(as_text=True)


def test_admin_deletes_a_study_in_orthanc_and_everywhere_else(app, linked, orthanc, login, staff, api):
    req, study = linked
    study_id, orthanc_id, uid = study.id, study.orthanc_id, study.study_uid
    admin = login("boss")
    r = delete(admin, study, follow_redirects=True)
    assert r.status_code == 200
    page = text(r)
    assert "Deleted study CHEST PA of MBEKI^THANDI." in page
    assert not in_orthanc(orthanc, "studies", orthanc_id)

    db.session.expire_all()
    assert db.session.get(OrthancStudy, study_id) is None
    assert count(OrthancSeries) == 0 and count(StudyLink) == 0
    assert uid not in text(admin.get("/orthanc/studies"))
    assert admin.get(f"/orthanc/studies/{study_id}").status_code == 404
    assert api("physician").get("/api/v1/studies").json["items"] == []
    req = db.session.get(ImagingRequest, req.id)
    assert req.images_available is False
    audit = db.session.scalars(select(LinkEvent).where(LinkEvent.study_uid == uid, LinkEvent.action == "delete")).all()
    manual = [e for e in audit if e.method == "manual"]
    assert len(manual) == 1 and manual[0].user_id == staff["admin"].id and "CHEST PA" in manual[0].note
    assert [(e.request_id, e.method) for e in audit if e.request_id] == [(req.id, "orthanc")]


def test_a_deleted_studys_patient_leaves_the_orthanc_patient_list(app, linked, orthanc, login):
    """Orthanc drops a patient with its last study; the mirror must too,
    without waiting for a reconciliation that has nothing left to remove."""
    _req, study = linked
    admin = login("boss")
    assert delete(admin, study).status_code == 302
    assert orthanc.get("/patients") == []
    db.session.expire_all()
    assert count(OrthancPatient) == 0
    assert "HOSP-77" not in admin.get("/orthanc/patients").get_data(as_text=True)


@pytest.mark.parametrize("confirm", [False, "", "1.2.3", "wrong"], ids=["missing", "empty", "other-uid", "text"])
def test_delete_without_the_confirmation_naming_the_study_is_refused(app, linked, orthanc, login, confirm):
    _req, study = linked
    r = delete(login("boss"), study, confirm=confirm, follow_redirects=True)
    assert r.status_code == 200 and "needs the confirmation" in text(r)
    assert in_orthanc(orthanc, "studies", study.orthanc_id)
    db.session.expire_all()
    assert count(OrthancStudy) == 1 and count(StudyLink) == 1
    assert count(LinkEvent) == 1  # only the automatic link


def test_delete_without_a_csrf_token_is_refused(app, linked, orthanc, login):
    _req, study = linked
    admin = login("boss")
    r = admin.client.post(f"/orthanc/studies/{study.id}/delete", data={"confirm": study.study_uid})
    assert r.status_code == 400 and "Form expired" in text(r)
    assert in_orthanc(orthanc, "studies", study.orthanc_id)
    db.session.expire_all()
    assert count(OrthancStudy) == 1


@pytest.mark.parametrize("user", ["doc", "tech", "rad"])
def test_only_an_admin_may_delete_a_study(app, linked, orthanc, login, user):
    _req, study = linked
    r = delete(login(user), study)
    assert r.status_code == 403
    assert in_orthanc(orthanc, "studies", study.orthanc_id)
    db.session.expire_all()
    assert count(OrthancStudy) == 1 and count(StudyLink) == 1


def test_anonymous_delete_goes_to_login(app, linked, orthanc, client):
    from tests.support.web import CsrfClient

    _req, study = linked
    r = CsrfClient(client).post(f"/orthanc/studies/{study.id}/delete", {"confirm": study.study_uid},
                                token_from="/login")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert in_orthanc(orthanc, "studies", study.orthanc_id)


def test_a_study_already_gone_from_orthanc_counts_as_deleted(app, linked, orthanc, login, staff):
    req, study = linked
    study_id = study.id
    orthanc.delete_study(study.orthanc_id)  # someone used Orthanc Explorer; no sync since
    r = delete(login("boss"), study, follow_redirects=True)
    assert r.status_code == 200
    assert "already gone from Orthanc" in text(r)
    db.session.expire_all()
    assert db.session.get(OrthancStudy, study_id) is None and count(StudyLink) == 0
    assert db.session.get(ImagingRequest, req.id).images_available is False
    assert db.session.scalar(select(LinkEvent).where(LinkEvent.method == "manual")).user_id == staff["admin"].id


def test_delete_of_an_unknown_study_is_404(app, linked, login):
    _req, study = linked
    admin = login("boss")
    r = admin.post("/orthanc/studies/999999/delete", {"confirm": study.study_uid},
                   token_from=f"/orthanc/studies/{study.id}")
    assert r.status_code == 404


# -- series ---------------------------------------------------------------------------------------

def series_of(study) -> list[OrthancSeries]:
    db.session.expire_all()
    return list(db.session.scalars(select(OrthancSeries).where(OrthancSeries.study_id == study.id)
                                   .order_by(OrthancSeries.number)))


def delete_series(client, study, series, confirm=None, **kw):
    data = {"confirm": series.series_uid if confirm is None else confirm}
    return client.post(f"/orthanc/series/{series.id}/delete", data, token_from=f"/orthanc/studies/{study.id}", **kw)


def test_admin_deletes_one_series_and_the_study_keeps_the_other(app, linked, orthanc, login, staff):
    _req, study = linked
    first, second = series_of(study)
    admin = login("boss")
    page = admin.get(f"/orthanc/studies/{study.id}").get_data(as_text=True)
    assert f'action="/orthanc/series/{first.id}/delete"' in page
    r = delete_series(admin, study, first, follow_redirects=True)
    assert "Deleted series 1" in text(r)
    assert not in_orthanc(orthanc, "series", first.orthanc_id)
    assert in_orthanc(orthanc, "series", second.orthanc_id) and in_orthanc(orthanc, "studies", study.orthanc_id)
    assert [s.id for s in series_of(study)] == [second.id]
    study = db.session.get(OrthancStudy, study.id)
    assert (study.series_count, study.instance_count) == (1, 1)
    assert count(StudyLink) == 1, "the study is still there: its link stays"
    event = db.session.scalar(select(LinkEvent).where(LinkEvent.action == "delete"))
    assert event.user_id == staff["admin"].id and "series 1" in event.note


def test_deleting_the_last_series_deletes_the_study_too(app, linked, orthanc, login):
    req, study = linked
    study_id = study.id
    admin = login("boss")
    for series in series_of(study):
        r = delete_series(admin, study, series, follow_redirects=True)
    assert "the study is gone too" in text(r)
    assert not in_orthanc(orthanc, "studies", study.orthanc_id)
    db.session.expire_all()
    assert db.session.get(OrthancStudy, study_id) is None and count(StudyLink) == 0
    assert db.session.get(ImagingRequest, req.id).images_available is False


def test_series_delete_needs_its_confirmation_and_an_admin(app, linked, orthanc, login):
    _req, study = linked
    first = series_of(study)[0]
    r = delete_series(login("boss"), study, first, confirm=study.study_uid, follow_redirects=True)
    assert "needs the confirmation that names the series" in text(r)
    assert delete_series(login("tech"), study, first).status_code == 403
    assert in_orthanc(orthanc, "series", first.orthanc_id)
    assert len(series_of(study)) == 2


# -- an Orthanc that refuses ------------------------------------------------------------------------

class RefusingOrthanc:
    """A tiny HTTP server that answers every DELETE with ``status`` (and
    counts them). Orthanc 1.10.1 has no read-only switch (``ReadOnly`` came
    in 1.12.5) and its admin user may always delete, so this refusal cannot
    be produced on demand by the real server; a reverse proxy or a newer
    read-only Orthanc answers this way."""

    def __init__(self, status: int):
        self.deletes: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_DELETE(self):
                outer.deletes.append(self.path)
                body = json.dumps({"HttpStatus": status, "Message": "The server is read-only"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def refusing(request):
    server = RefusingOrthanc(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("refusing", [405, 403], indirect=True, ids=["405", "403"])
def test_an_orthanc_that_refuses_to_delete_gives_a_clear_message_and_nothing_changes(
        app, linked, orthanc, login, refusing):
    req, study = linked
    row = db.session.get(OrthancServer, study.server_id)
    row.url = refusing.url
    db.session.commit()
    admin = login("boss")
    r = delete(admin, study, follow_redirects=True)
    assert r.status_code == 200
    assert refusing.deletes == [f"/studies/{study.orthanc_id}"]
    assert "Orthanc refused to delete" in text(r) and "Nothing was changed." in text(r)
    db.session.expire_all()
    assert count(OrthancStudy) == 1 and count(OrthancSeries) == 2 and count(StudyLink) == 1
    assert count(LinkEvent) == 1
    assert db.session.get(ImagingRequest, req.id).images_available is True
    assert in_orthanc(orthanc, "studies", study.orthanc_id)

    first = series_of(study)[0]
    r = delete_series(admin, study, first, follow_redirects=True)
    assert "Orthanc refused to delete" in text(r)
    assert len(series_of(study)) == 2 and count(LinkEvent) == 1


def test_an_orthanc_that_is_down_gives_a_message_and_nothing_changes(app, linked, orthanc, login):
    _req, study = linked
    orthanc.kill()
    r = delete(login("boss"), study, follow_redirects=True)
    assert r.status_code == 200 and "Orthanc could not delete" in text(r) and "Nothing was changed." in text(r)
    db.session.expire_all()
    assert count(OrthancStudy) == 1 and count(StudyLink) == 1


def test_a_deletion_orthanc_did_not_make_is_an_upstream_failure():
    from ghimaging.api.errors import from_domain
    from ghimaging.exceptions import UpstreamFailure
    from ghimaging.orthanc.deletion import DeleteError

    assert issubclass(DeleteError, UpstreamFailure)
    assert from_domain(DeleteError("refused")).status == 502
    assert from_domain(DeleteError("no answer", timeout=True)).status == 504
