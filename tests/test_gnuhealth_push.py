"""Pushing to a real GNU Health 5.0 through the outbox: orders placed here
appear there in ``requested``; a finalised result appears with its comment
and key images and closes the request; with health_orthanc the study GNU
Health synced points at the result; an outage loses nothing; a lost answer
creates nothing twice."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.gnuhealth import outbox, status, worker
from ghimaging.gnuhealth.settings import configure
from ghimaging.imaging import workflow
from ghimaging.models import OutboxItem
from ghimaging.models._time import utcnow
from tests.support import dicomgen
from tests.support.factories import png_bytes
from tests.support.gnuhealth import DropProxy

PUID = "GHI-7700-0001"  # 9+ characters: GNU Health's Orthanc sync looks those up as PUIDs


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


def remote_request(admin, req):
    rows = admin.search_read("gnuhealth.imaging.test.request", [("request_line", "=", req.accession_number)],
                             ["state", "patient.puid", "requested_test.code", "urgent", "comment", "doctor",
                              "request"])
    assert len(rows) == 1, rows
    return rows[0]


def results_of(admin, remote_req_id):
    return admin.search_read("gnuhealth.imaging.test.result", [("request", "=", remote_req_id)],
                             ["comment", "number", "requested_test", "patient"])


def attachments_of(admin, result_id):
    return admin.search_read("ir.attachment", [("resource", "=", f"gnuhealth.imaging.test.result,{result_id}")],
                             ["name", "description", "data"], order=[["name", "ASC"]])


def finalised(req, radiologist, report="No focal consolidation. Heart size normal.", images=2):
    result = workflow.create_result(
        req, radiologist, radiologist=radiologist, result_date=date(2026, 3, 5), report=report,
        new_images=[workflow.NewImage(png_bytes(color=(i * 60, 10, 10)), f"key{i}.png", f"Key image {i}")
                    for i in range(1, images + 1)])
    return workflow.finalise_result(result, radiologist)


def drained():
    summary = worker.drain()
    assert not summary.errors, summary.errors
    return summary


def test_order_placed_here_appears_there_in_requested(app, gnuhealth_settings, create_patient, create_request,
                                                      make_user):
    admin = gnuhealth_settings.admin()
    doc = make_user("drwho", "physician")
    patient = create_patient(puid=PUID, family_name="Ferreira", given_name="Ana Lúcia")
    req = create_request(patient, user=doc, physician=doc, urgent=True, comment="Rule out pneumonia")
    assert status.request_json(req)["state"] == "pending"
    drained()
    there = remote_request(admin, req)
    assert there["state"] == "draft" and there["patient."]["puid"] == PUID
    assert there["requested_test."]["code"] == "XR-CHEST" and there["urgent"] and there["request"] == req.order_number
    assert "Rule out pneumonia" in there["comment"]
    patient_there = admin.search_read("gnuhealth.patient", [("puid", "=", PUID)], ["lastname", "party.name", "dob"])
    assert patient_there[0]["lastname"] == "Ferreira" and patient_there[0]["party."]["name"] == "Ana Lúcia"
    workflow.submit(req, doc)
    drained()
    assert remote_request(admin, req)["state"] == "requested"
    assert status.request_json(req) == {"request_id": there["id"], "state": "synced", "error": None}
    # Nothing is created twice: a second order of the same patient and test reuses both.
    create_request(patient, user=doc, submit=True)
    drained()
    assert len(admin.search_read("gnuhealth.patient", [("puid", "=", PUID)], ["id"])) == 1
    assert len(admin.search_read("gnuhealth.imaging.test", [("code", "=", "XR-CHEST")], ["id"])) == 1


def test_finalised_result_with_key_images_closes_the_request_there(app, gnuhealth_settings, create_patient,
                                                                   create_request, make_user, login):
    admin = gnuhealth_settings.admin()
    rad = make_user("rad", "radiologist", full_name="Dr Rad")
    req = create_request(create_patient(puid=PUID), submit=True)
    finalised(req, rad)
    drained()
    there = remote_request(admin, req)
    assert there["state"] == "done"
    results = results_of(admin, there["id"])
    assert len(results) == 1 and results[0]["comment"].startswith("No focal consolidation")
    files = attachments_of(admin, results[0]["id"])
    assert [f["description"] for f in files] == ["Key image 1", "Key image 2"]
    assert all(f["data"].startswith(b"\x89PNG") for f in files)
    # An addendum follows as a comment update, still one result and two files.
    workflow.add_addendum(req.result, rad, "Comparison with 2025 film: unchanged.")
    drained()
    results = results_of(admin, there["id"])
    assert len(results) == 1 and "Comparison with 2025 film: unchanged." in results[0]["comment"]
    assert len(attachments_of(admin, results[0]["id"])) == 2
    assert status.of_request(req).state == "synced"
    assert status.request_json(req)["request_id"] == there["id"]


def test_study_synced_by_gnuhealth_points_at_the_result(app, gnuhealth_settings, create_patient, create_request,
                                                        make_user, tmp_path, orthanc, orthanc_row):
    from ghimaging.orthanc import sync

    admin = gnuhealth_settings.admin()
    rad = make_user("rad", "radiologist")
    patient = create_patient(puid=PUID, family_name="Sousa", given_name="Rita")
    req = create_request(patient, submit=True)
    drained()  # the patient is there before its images reach the Orthanc GNU Health syncs
    orthanc.upload(dicomgen.make_instance(PUID, "Sousa^Rita", study_uid=req.study_instance_uid,
                                          accession=req.accession_number))
    assert sync.run(orthanc_row.id).error == ""  # ghimaging links the study to the request
    admin.create("gnuhealth.orthanc.config", {"label": "main", "domain": orthanc.url,
                                              "user": orthanc.username, "password": orthanc.password})
    admin.wizard("gnuhealth.imaging_orthanc.full_synchronize", "synchronize",
                 "gnuhealth.imaging_orthanc.study", [])
    study = admin.search_read("gnuhealth.imaging_orthanc.study",
                              [("study_instance_UID", "=", req.study_instance_uid)],
                              ["imaging_test", "patient.puid"])
    assert len(study) == 1 and study[0]["imaging_test"] is None and study[0]["patient."]["puid"] == PUID
    finalised(req, rad, images=1)
    drained()
    result = results_of(admin, remote_request(admin, req)["id"])[0]
    study = admin.search_read("gnuhealth.imaging_orthanc.study", [("id", "=", study[0]["id"])],
                              ["imaging_test"])[0]
    assert study["imaging_test"] == result["id"]
    # GNU Health's own sync keeps the link.
    admin.wizard("gnuhealth.imaging_orthanc.full_synchronize", "synchronize",
                 "gnuhealth.imaging_orthanc.study", [])
    assert admin.search_read("gnuhealth.imaging_orthanc.study", [("id", "=", study["id"])],
                             ["imaging_test"])[0]["imaging_test"] == result["id"]


def test_gnuhealth_down_during_a_push_then_back_the_outbox_drains(app, gnuhealth_settings, create_patient,
                                                                  create_request, make_user, login):
    gh = gnuhealth_settings
    rad = make_user("rad", "radiologist")
    req = create_request(create_patient(puid=PUID), submit=True)
    drained()
    finalised(req, rad)
    gh.stop()
    summary = worker.drain()
    assert summary.unreachable and summary.retrying == 1 and summary.sent == 1  # the request item, no call
    # The request's own change (done here) needs nothing there (the result
    # closes it); the result waits for GNU Health.
    (item,) = db.session.scalars(select(OutboxItem).where(OutboxItem.state == "pending")).all()
    assert item.kind == "result" and item.attempts == 1 and "refused the connection" in item.last_error
    assert item.next_try_at > utcnow() + timedelta(seconds=20)
    st = status.request_json(req)
    assert st["state"] == "pending" and "refused the connection" in st["error"]
    page = login("rad").get(f"/requests/{req.id}")
    assert page.status_code == 200
    assert worker.drain().sent == 0  # not due yet: nothing is tried
    gh.start()
    item.next_try_at = utcnow()  # the backoff is over
    db.session.commit()
    drained()
    db.session.refresh(item)
    assert (item.state, item.attempts) == ("sent", 2)
    admin = gh.admin()
    there = remote_request(admin, req)
    assert there["state"] == "done" and len(results_of(admin, there["id"])) == 1
    assert status.request_json(req)["state"] == "synced"


def test_lost_answers_after_gnuhealth_committed_create_nothing_twice(app, gnuhealth, create_patient,
                                                                     create_request, make_user):
    proxy = DropProxy(gnuhealth.port)
    try:
        configure(url=proxy.url, database=gnuhealth.database, username=gnuhealth.user,
                  password=gnuhealth.password)
        rad = make_user("rad", "radiologist")
        req = create_request(create_patient(puid=PUID), submit=True)
        proxy.drop_next(b"<methodName>model.gnuhealth.imaging.test.request.create</methodName>")
        s1 = worker.drain()
        assert s1.retrying == 1 and "closed the connection before answering" in s1.errors[0]
        finalised(req, rad)
        proxy.drop_next(b"<methodName>wizard.wizard.generate.result.execute</methodName>")
        proxy.drop_next(b"<methodName>model.ir.attachment.create</methodName>")
        for _ in range(4):  # each retry meets the next lost answer, then goes through
            db.session.execute(OutboxItem.__table__.update().values(next_try_at=utcnow()))
            db.session.commit()
            worker.drain()
        assert len(proxy.dropped) == 3
        assert {i.state for i in db.session.scalars(select(OutboxItem))} == {"sent"}
        admin = gnuhealth.admin()
        there = remote_request(admin, req)  # exactly one request there
        results = results_of(admin, there["id"])
        assert there["state"] == "done" and len(results) == 1
        assert len(attachments_of(admin, results[0]["id"])) == 2
    finally:
        proxy.close()


def test_failed_item_shown_and_retried_from_the_admin_page(app, gnuhealth_settings, create_patient,
                                                           create_request, make_user, login):
    # A test GNU Health refuses to create (no rights on products): a permanent error.
    gnuhealth_settings.admin()("model.res.user.write",
                               [gnuhealth_settings.admin().search_read("res.user", [("login", "=", "ghimaging")],
                                                                        ["id"])[0]["id"]],
                               {"groups": [("remove", [g["id"] for g in gnuhealth_settings.admin().search_read(
                                   "res.group", [("name", "=", "Product Administration")], ["id"])])]})
    req = create_request(create_patient(puid=PUID), submit=True)
    summary = worker.drain()
    assert summary.failed == 1
    st = status.request_json(req)
    assert st["state"] == "failed" and "Product Template" in st["error"]
    make_user("boss", "admin")
    c = login("boss")
    page = c.get("/admin/gnuhealth/outbox?state=failed").get_data(as_text=True)
    assert "Product Template" in page and req.accession_number in page
    # The request's own page says so, with a retry button.
    page = c.get(f"/requests/{req.id}").get_data(as_text=True)
    line = page[page.index('class="gnuhealth-status"'):]
    line = line[:line.index("</p>")]
    assert 'data-gnuhealth-state="failed"' in page and "Product Template" in line and "Retry now" in line
    item = db.session.scalar(select(OutboxItem))
    r = c.post(f"/admin/gnuhealth/outbox/{item.id}/retry", token_from="/admin/gnuhealth/outbox")
    assert r.status_code == 302
    db.session.refresh(item)
    assert item.state == "pending" and item.attempts == 0


def test_background_loop_sends_a_change_within_seconds(app, gnuhealth_settings, create_patient, create_request):
    import time

    req = create_request(create_patient(puid=PUID))
    thread = worker.GnuHealthWorker(app, interval=30)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            db.session.expire_all()
            if status.request_json(req)["state"] == "synced":
                break
            time.sleep(0.2)
        assert status.request_json(req)["state"] == "synced"
        started = time.monotonic()
        workflow.submit(req, None)  # wakes the loop at once, not after its 30 s interval
        db.session.commit()
        while time.monotonic() - started < 15:
            db.session.expire_all()
            if status.request_json(req)["state"] == "synced":
                break
            time.sleep(0.2)
        assert status.request_json(req)["state"] == "synced"
        assert remote_request(gnuhealth_settings.admin(), req)["state"] == "requested"
    finally:
        thread.stop(10)


def test_test_mapped_by_hand_on_the_tests_page_is_used(app, gnuhealth_settings, create_patient, create_request,
                                                       make_user, login):
    from tests.test_gnuhealth_pull import gh_test

    admin = gnuhealth_settings.admin()
    theirs = gh_test(admin, "RX-TORAX", "Radiografia de tórax")
    make_user("boss", "admin")
    c = login("boss")
    page = c.get("/admin/gnuhealth/tests").get_data(as_text=True)
    assert "RX-TORAX — Radiografia de tórax" in page and "XR-CHEST" in page
    req = create_request(create_patient(puid=PUID))
    r = c.post("/admin/gnuhealth/tests", {"test_id": str(req.test_id), "remote_id": str(theirs)},
               token_from="/admin/gnuhealth/tests")
    assert r.status_code == 302
    drained()
    assert remote_request(admin, req)["requested_test."]["code"] == "RX-TORAX"
    assert admin.search_read("gnuhealth.imaging.test", [("code", "=", "XR-CHEST")], ["id"]) == []


# -- review fixes ------------------------------------------------------------------

def test_another_patients_study_with_our_uid_is_never_pointed_at_our_result(
        app, gnuhealth_settings, create_patient, create_request, make_user, orthanc, orthanc_row):
    """Patient E's study carries D's StudyInstanceUID (ghimaging refuses to
    link it to D's request): GNU Health's copy of it is never pointed at D's
    result, and the look-up there asks for D's PatientID."""
    from ghimaging.gnuhealth.remote import Remote
    from ghimaging.gnuhealth.settings import client_for, get_config
    from ghimaging.orthanc import matching, sync

    admin = gnuhealth_settings.admin()
    rad = make_user("rad", "radiologist")
    d = create_patient(puid=PUID, family_name="Dias", given_name="Dora")
    e = create_patient(puid="GHI-7700-0002", family_name="Esteves", given_name="Eva")
    req = create_request(d, submit=True)
    create_request(e, submit=True)  # E exists in GNU Health too (its sync stops on unknown 9+ PatientIDs)
    drained()
    orthanc.upload(dicomgen.make_instance(e.puid, "Esteves^Eva", study_uid=req.study_instance_uid))
    assert sync.run(orthanc_row.id).error == ""
    assert matching.studies_of(req) == []  # refused here: another patient
    admin.create("gnuhealth.orthanc.config", {"label": "main", "domain": orthanc.url,
                                              "user": orthanc.username, "password": orthanc.password})
    admin.wizard("gnuhealth.imaging_orthanc.full_synchronize", "synchronize",
                 "gnuhealth.imaging_orthanc.study", [])
    (theirs,) = admin.search_read("gnuhealth.imaging_orthanc.study",
                                  [("study_instance_UID", "=", req.study_instance_uid)],
                                  ["imaging_test", "patient_id"])
    assert theirs["patient_id"] == e.puid and theirs["imaging_test"] is None
    finalised(req, rad, images=1)
    drained()
    assert results_of(admin, remote_request(admin, req)["id"])  # the result is there...
    assert admin.search_read("gnuhealth.imaging_orthanc.study", [("id", "=", theirs["id"])],
                             ["imaging_test"])[0]["imaging_test"] is None  # ...and E's study is not D's
    # The look-up itself: by UID and PatientID (health_orthanc's patient_id field).
    with client_for(get_config()) as client:
        remote = Remote(client)
        assert remote.studies_by_uid([req.study_instance_uid], d.puid) == []
        assert [r["id"] for r in remote.studies_by_uid([req.study_instance_uid], e.puid)] == [theirs["id"]]


def test_gnuhealth_patient_with_our_puid_but_another_identity_is_not_used(app, gnuhealth_settings, create_patient,
                                                                          create_request):
    from tests.test_gnuhealth_pull import gh_patient

    admin = gnuhealth_settings.admin()
    bob = gh_patient(admin, PUID, "Bob", "Barros", dob=date(1980, 3, 4), gender="m")
    alice = create_patient(puid=PUID, family_name="Andrade", given_name="Alice", birth_date=date(1970, 1, 2))
    req = create_request(alice, submit=True)
    summary = worker.drain()
    assert summary.failed == 1
    st = status.request_json(req)
    assert st["state"] == "failed"
    assert "Barros, Bob (1980-03-04)" in st["error"] and "Andrade, Alice (1970-01-02)" in st["error"]
    assert admin.search_read("gnuhealth.imaging.test.request", [], ["id"]) == []
    assert status.patient_link(alice.id) is None
    there = admin.search_read("gnuhealth.patient", [("id", "=", bob)], ["lastname", "party.name"])[0]
    assert (there["lastname"], there["party."]["name"]) == ("Barros", "Bob")


def test_items_of_one_request_never_go_at_once(app, gnuhealth_settings, create_patient, create_request, make_user):
    """While one process sends a request's "create" (claimed), another
    process does not send its "submit": GNU Health gets one request."""
    admin = gnuhealth_settings.admin()
    doc = make_user("drwho", "physician")
    req = create_request(create_patient(puid=PUID), user=doc, physician=doc)
    (first,) = db.session.scalars(select(OutboxItem)).all()
    first.next_try_at = utcnow() + timedelta(seconds=outbox.CLAIM_SECONDS)  # taken by another process
    db.session.commit()
    workflow.submit(req, doc)
    assert db.session.scalar(select(db.func.count()).select_from(OutboxItem)) == 2
    assert worker.step() is False  # the submit waits for the create in flight
    assert admin.search_read("gnuhealth.imaging.test.request", [], ["id"]) == []
    first.next_try_at = utcnow()  # the other process gave up: it is due again
    db.session.commit()
    drained()
    assert remote_request(admin, req)["state"] == "requested"
    assert {i.state for i in db.session.scalars(select(OutboxItem))} == {"sent"}


def test_two_requests_of_one_new_patient_create_it_once(app, gnuhealth_settings, create_patient, create_request):
    """The second request of a patient not yet in GNU Health waits while the
    first one (which creates the patient) is in flight."""
    admin = gnuhealth_settings.admin()
    patient = create_patient(puid=PUID)
    one = create_request(patient, submit=True)
    two = create_request(patient, submit=True)
    first = db.session.scalar(select(OutboxItem).where(OutboxItem.request_id == one.id))
    first.next_try_at = utcnow() + timedelta(seconds=outbox.CLAIM_SECONDS)
    db.session.commit()
    assert worker.step() is False
    first.next_try_at = utcnow()
    db.session.commit()
    drained()
    assert len(admin.search_read("gnuhealth.patient", [("puid", "=", PUID)], ["id"])) == 1
    assert remote_request(admin, one)["state"] == remote_request(admin, two)["state"] == "requested"


def test_patient_made_there_meanwhile_is_found_again_not_failed(app, gnuhealth_settings, create_patient,
                                                               create_request, monkeypatch):
    """Someone creates the patient in GNU Health between our look-up and our
    create (another process, a clerk): GNU Health refuses ours (ref_uniq,
    "The PUID must be unique"); the push looks it up again and goes on."""
    from ghimaging.gnuhealth.client import GnuHealthClient
    from tests.test_gnuhealth_pull import gh_patient

    admin = gnuhealth_settings.admin()
    patient = create_patient(puid=PUID, family_name="Ferreira", given_name="Ana", birth_date=date(1981, 2, 3))
    req = create_request(patient, submit=True)
    real_create = GnuHealthClient.create
    made = []

    def create(self, model, values):
        if model == "party.party" and not made:  # the other party gets there first
            made.append(gh_patient(admin, PUID, "Ana", "Ferreira", dob=date(1981, 2, 3)))
        return real_create(self, model, values)

    monkeypatch.setattr(GnuHealthClient, "create", create)
    drained()
    assert made
    assert [p["id"] for p in admin.search_read("gnuhealth.patient", [("puid", "=", PUID)], ["id"])] == made
    assert remote_request(admin, req)["patient."]["puid"] == PUID
    assert status.patient_link(patient.id).remote_id == made[0]


def test_retry_link_never_leads_off_site(app, gnuhealth_settings, create_patient, create_request, make_user, login):
    req = create_request(create_patient(puid=PUID))
    make_user("tech", "technologist")
    c = login("tech")
    for evil in ("/\\evil.example", "\\/evil.example", "//evil.example", "/\t/evil.example", "https://evil.example"):
        r = c.post(f"/gnuhealth/requests/{req.id}/retry", {"next": evil}, token_from=f"/requests/{req.id}")
        assert r.status_code == 302 and r.headers["Location"].endswith(f"/requests/{req.id}"), evil
    r = c.post(f"/gnuhealth/requests/{req.id}/retry", {"next": "/requests/"}, token_from=f"/requests/{req.id}")
    assert r.headers["Location"].endswith("/requests/")
    page = c.get("/gnuhealth/patients?next=/%5Cevil.example").get_data(as_text=True)
    assert "evil.example" not in page
