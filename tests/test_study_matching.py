"""Closing the loop against a real Orthanc 1.10.1 (worklists plugin on the
folder ghimaging writes), with pynetdicom playing the modality: order,
submit, Modality Worklist C-FIND, an image built from the worklist answer,
C-STORE, sync; then the study must find its request by StudyInstanceUID, by
AccessionNumber, or land in the unmatched inbox and be linked by hand.
Also: unlink, deletion in Orthanc, two patients on one study, results that
show the linked study, key images, the ZIP download, the merge-id rule."""

from __future__ import annotations

import html
import io
import re
import zipfile
from datetime import date, datetime, timedelta

import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, LinkEvent, OrthancStudy, Result, StudyLink
from ghimaging.orthanc import sync
from tests.support import dicomgen
from tests.support.orthanc import WORKLISTS_PLUGIN, OrthancServer, c_store
from tests.support.web import CsrfClient


@pytest.fixture(autouse=True)
def _requires_worklists_plugin():
    """Missing parts fail, never skip: the test command installs them."""
    if not WORKLISTS_PLUGIN.exists():
        pytest.fail("Orthanc's worklists plugin is missing: `bash deploy/test.sh` installs Debian's orthanc")
ORG_ROOT = "1.2.826.0.1.3680043.10.4242"


@pytest.fixture
def app_config(tmp_path):
    """ghimaging writes into the very folder Orthanc reads (Worklists.Database)."""
    return {"WORKLIST_DIR": str(tmp_path / "worklists"), "ORG_ROOT": ORG_ROOT}


@pytest.fixture
def orthanc(tmp_path):
    """Overrides the conftest Orthanc: the same, plus the worklists plugin on
    the app's worklist folder (so ``orthanc_row`` points at this one)."""
    server = OrthancServer(tmp_path / "orthanc", worklists=True, worklist_dir=tmp_path / "worklists")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def staff(make_user):
    return {"doc": make_user("doc", "physician", full_name="Gregory House"),
            "tech": make_user("tech", "technologist", full_name="Tina Tech"),
            "rad": make_user("rad", "radiologist", full_name="Rita Rad"),
            "admin": make_user("boss", "admin")}


@pytest.fixture
def order(app, staff, create_request, create_patient, catalog):
    """``order(patient=None, test=None)``: a submitted request (its .wl file written)."""

    def make(patient=None, test=None, **kw):
        return create_request(patient or create_patient(), test or catalog["chest"], submit=True,
                              user=staff["doc"], physician=staff["doc"], **kw)

    return make


# -- the modality's side -----------------------------------------------------------------------

def c_find(orthanc: OrthancServer, accession: str = "") -> list[Dataset]:
    """The worklist as a modality gets it; fails unless Orthanc ends with Success."""
    ds = Dataset()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "RequestedProcedureID", "RequestedProcedureDescription"):
        setattr(ds, kw, "")
    ds.AccessionNumber = accession
    sps = Dataset()
    for kw in ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
               "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID", "ScheduledProcedureStepDescription"):
        setattr(sps, kw, "")
    ds.ScheduledProcedureStepSequence = [sps]
    ae = AE(ae_title="XRAY1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    assert assoc.is_established, orthanc.log_tail()
    items, last = [], None
    try:
        for status, identifier in assoc.send_c_find(ds, ModalityWorklistInformationFind):
            last = status.Status if status is not None and "Status" in status else None
            if last in (0xFF00, 0xFF01):
                items.append(identifier)
    finally:
        if assoc.is_established:
            assoc.release()
    assert last == 0x0000, f"C-FIND ended with {last}\n{orthanc.log_tail()}"
    return items


def acquire(answer: Dataset, *, keep_uid: bool = True, keep_accession: bool = True, **kw) -> Dataset:
    """The image a modality makes for a worklist item: patient and modality
    copied from the answer; new SOP and series UIDs; the study UID and the
    accession number kept or rewritten, as real modalities do."""
    modality = answer.ScheduledProcedureStepSequence[0].Modality
    kw.setdefault("study_date", date.today().strftime("%Y%m%d"))
    return dicomgen.make_instance(
        str(answer.PatientID), str(answer.PatientName),
        study_uid=str(answer.StudyInstanceUID) if keep_uid else generate_uid(),
        accession=str(answer.AccessionNumber) if keep_accession else "MOD-" + generate_uid()[-8:],
        modality=modality, rows=32, cols=32, **kw)



def modality_sends(orthanc: OrthancServer, req: ImagingRequest, **kw) -> Dataset:
    """C-FIND the request's worklist item, make the image, C-STORE it."""
    answers = c_find(orthanc, req.accession_number)
    assert len(answers) == 1, f"worklist item of {req.accession_number} not offered"
    ds = acquire(answers[0], **kw)
    c_store(orthanc, ds)
    return ds


def synced(row) -> None:
    summary = sync.run(row.id)
    assert summary.error == "", summary.error
    db.session.expire_all()


def study_of(ds: Dataset) -> OrthancStudy:
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.study_uid == str(ds.StudyInstanceUID)))
    assert study is not None, "study not mirrored"
    return study


def links_of(req: ImagingRequest) -> list[StudyLink]:
    return list(db.session.scalars(select(StudyLink).where(StudyLink.request_id == req.id)))


def wl_file(app, req: ImagingRequest):
    from pathlib import Path

    return Path(app.config["WORKLIST_DIR"]) / f"{req.accession_number}.wl"


def text(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


# -- the three kinds of modality ------------------------------------------------------------------

def test_a_modality_that_keeps_the_study_uid_gets_its_study_linked_to_the_order(
        app, orthanc, orthanc_row, staff, login, create_patient, catalog, api):
    doc = login("doc")
    patient = create_patient(puid="HOSP-0042", family_name="Mbeki", given_name="Thandi")
    r = doc.post("/requests/new", {"patient": patient.puid, "tests": [catalog["chest"].id],
                                   "physician": staff["doc"].id, "action": "submit"}, token_from="/requests/new")
    assert r.status_code == 302, text(r)[:500]
    req = db.session.scalar(select(ImagingRequest).where(ImagingRequest.patient_id == patient.id))
    assert req.state == "requested" and wl_file(app, req).exists()

    answers = c_find(orthanc, req.accession_number)
    assert len(answers) == 1
    assert answers[0].PatientID == "HOSP-0042" and answers[0].StudyInstanceUID == req.study_instance_uid
    ds = acquire(answers[0])
    c_store(orthanc, ds)
    synced(orthanc_row)

    study = study_of(ds)
    links = links_of(req)
    assert [(lk.study_id, lk.method) for lk in links] == [(study.id, "study_uid")]
    assert not wl_file(app, req).exists()
    assert c_find(orthanc, req.accession_number) == []
    db.session.refresh(req)
    assert req.images_available is True and req.state == "requested"

    page = text(doc.get(f"/requests/{req.id}"))
    assert "images available" in page
    assert f"/orthanc/studies/{study.id}" in page and "matched automatically" in page
    listing = doc.get("/requests?state=requested").get_data(as_text=True)
    row = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*{req.accession_number}(?:(?!</tr>).)*</tr>", listing, re.S)
    assert row and 'data-progress="images">Images received<' in row.group(0)

    got = api("physician").get(f"/api/v1/requests/{req.id}").json
    assert got["images_available"] is True
    keys = ("id", "study_instance_uid", "orthanc_id", "server", "method")
    assert [{k: s[k] for k in keys} for s in got["studies"]] == [
        {"id": study.id, "study_instance_uid": req.study_instance_uid, "orthanc_id": study.orthanc_id,
         "server": "Main", "method": "study_uid"}]
    event = db.session.scalar(select(LinkEvent).where(LinkEvent.request_id == req.id))
    assert (event.action, event.method, event.user_id) == ("link", "study_uid", None)


def test_a_modality_that_keeps_only_the_accession_number_is_matched_by_accession(app, orthanc, orthanc_row, order):
    req = order()
    ds = modality_sends(orthanc, req, keep_uid=False)
    assert ds.StudyInstanceUID != req.study_instance_uid
    synced(orthanc_row)

    study = study_of(ds)
    assert [(lk.study_id, lk.method) for lk in links_of(req)] == [(study.id, "accession")]
    assert not wl_file(app, req).exists()
    assert c_find(orthanc, req.accession_number) == []
    db.session.refresh(req)
    assert req.images_available is True


def test_a_study_with_neither_number_lands_in_the_inbox_and_is_linked_by_hand(
        app, orthanc, orthanc_row, order, staff, login, api, create_patient, catalog):
    other = order(test=catalog["abd"])  # another patient, another modality, same day
    req = order(create_patient(family_name="Okafor", given_name="Amina"))
    ds = modality_sends(orthanc, req, keep_uid=False, keep_accession=False)
    synced(orthanc_row)
    study = study_of(ds)
    assert links_of(req) == [] and links_of(other) == []
    assert wl_file(app, req).exists(), "an unmatched study must not take the item off the worklist"

    tech = login("tech")
    inbox = text(tech.get("/orthanc/unmatched"))
    assert f"/orthanc/studies/{study.id}" in inbox
    first = re.search(r'<form method="post" action="/orthanc/studies/(\d+)/link" class="suggestion">'
                      r'(?:(?!</form>).)*?name="request_id" value="(\d+)"(?:(?!</form>).)*?<small class="muted">([^<]*)'
                      , inbox, re.S)
    assert first and (int(first.group(1)), int(first.group(2))) == (study.id, req.id)
    assert "same patient (PatientID = PUID)" in first.group(3) and "same modality (CR)" in first.group(3)

    listed = api("technologist").get("/api/v1/studies/unmatched").json
    assert [s["study_instance_uid"] for s in listed["items"]] == [str(ds.StudyInstanceUID)]
    suggestions = listed["items"][0]["suggestions"]
    assert suggestions[0]["request_id"] == req.id and suggestions[0]["accession_number"] == req.accession_number
    assert {"same patient (PatientID = PUID)", "same modality (CR)"} <= set(suggestions[0]["reasons"])
    assert suggestions[0]["same_patient"] is True

    before = datetime.utcnow() - timedelta(seconds=5)
    r = tech.post(f"/orthanc/studies/{study.id}/link", {"request_id": req.id, "back": "/orthanc/unmatched"},
                  token_from="/orthanc/unmatched")
    assert r.status_code == 302 and r.headers["Location"].endswith("/orthanc/unmatched")
    assert [(lk.study_id, lk.method, lk.created_by_id) for lk in links_of(req)] == [(study.id, "manual", staff["tech"].id)]
    event = db.session.scalar(select(LinkEvent).where(LinkEvent.study_uid == study.study_uid))
    assert (event.action, event.method, event.user_id, event.request_id) == ("link", "manual", staff["tech"].id, req.id)
    assert before <= event.at <= datetime.utcnow() + timedelta(seconds=5)
    db.session.refresh(req)
    assert req.images_available is True
    assert not wl_file(app, req).exists() and c_find(orthanc, req.accession_number) == []
    assert f"/orthanc/studies/{study.id}" not in tech.get("/orthanc/unmatched").get_data(as_text=True)
    assert api("technologist").get("/api/v1/studies/unmatched").json["items"] == []
    history = text(tech.get(f"/orthanc/studies/{study.id}"))
    assert "linked by hand" in history and "Tina Tech" in history


def test_the_inbox_and_links_need_a_signed_in_member_of_staff(app, orthanc, orthanc_row, order, client):
    req = order()
    modality_sends(orthanc, req, keep_uid=False, keep_accession=False)
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy))
    assert client.get("/orthanc/unmatched").status_code == 302
    assert client.get("/api/v1/studies/unmatched").status_code == 401
    anonymous = CsrfClient(client)  # a valid CSRF token, no session: login_required must answer
    r = anonymous.post(f"/orthanc/studies/{study.id}/link", {"request_id": req.id}, token_from="/login")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert links_of(req) == []


# -- unlink ---------------------------------------------------------------------------------------

def test_unlinking_by_hand_offers_the_item_again_and_a_full_sync_does_not_relink(
        app, orthanc, orthanc_row, order, staff, login):
    req = order()
    ds = modality_sends(orthanc, req)
    synced(orthanc_row)
    study = study_of(ds)
    assert len(links_of(req)) == 1

    doc = login("doc")
    r = doc.post(f"/orthanc/studies/{study.id}/unlink", {"request_id": req.id},
                 token_from=f"/orthanc/studies/{study.id}")
    assert r.status_code == 302
    db.session.expire_all()
    assert links_of(req) == []
    assert req.images_available is False
    assert wl_file(app, req).exists(), "a request still requested goes back on the worklist"
    assert [a.AccessionNumber for a in c_find(orthanc, req.accession_number)] == [req.accession_number]
    event = db.session.scalars(select(LinkEvent).where(LinkEvent.request_id == req.id).order_by(LinkEvent.id)).all()[-1]
    assert (event.action, event.method, event.user_id) == ("unlink", "manual", staff["doc"].id)

    assert sync.run(orthanc_row.id, mode="full").error == ""
    db.session.expire_all()
    assert links_of(req) == [], "a manual unlink must survive a full sync"
    assert req.images_available is False
    c_store(orthanc, acquire(c_find(orthanc, req.accession_number)[0]))  # more images of the same study
    synced(orthanc_row)
    assert links_of(req) == []
    assert "images available" not in text(doc.get(f"/requests/{req.id}"))


def test_unlinking_a_request_that_is_done_does_not_put_it_back_on_the_worklist(
        app, orthanc, orthanc_row, order, staff):
    from ghimaging.orthanc import matching

    req = order()
    ds = modality_sends(orthanc, req)
    synced(orthanc_row)
    workflow.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(), report="Normal.",
                           final=True)  # a final result closes the request
    matching.unlink(study_of(ds), req, staff["rad"])
    assert not wl_file(app, req).exists()
    assert c_find(orthanc, req.accession_number) == []


# -- two patients, deletion ----------------------------------------------------------------------

def test_a_study_linked_to_requests_of_two_patients_shows_a_warning(
        app, orthanc, orthanc_row, order, staff, login, api, create_patient):
    req = order()
    stranger = order(create_patient(family_name="Stranger"))
    ds = modality_sends(orthanc, req)
    synced(orthanc_row)
    study = study_of(ds)
    tech = login("tech")
    assert "different patients" not in text(tech.get(f"/orthanc/studies/{study.id}"))

    r = api("technologist").post(f"/api/v1/studies/{study.id}/link", json={
        "request_id": stranger.id, "confirm_other_patient": True, "reason": "Twin exposure on one plate"})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert "different patients" in (r.json["warning"] or "")
    assert sorted(r.json["requests"]) == sorted([req.id, stranger.id])
    page = text(tech.get(f"/orthanc/studies/{study.id}"))
    assert re.search(r'role="alert">[^<]*different patients', page)


def test_linking_by_hand_to_a_second_patient_warns_in_the_message(app, orthanc, orthanc_row, order, login,
                                                                  create_patient):
    req = order()
    stranger = order(create_patient(family_name="Stranger"))
    ds = modality_sends(orthanc, req)
    synced(orthanc_row)
    study = study_of(ds)
    tech = login("tech")
    r = tech.post(f"/orthanc/studies/{study.id}/link", {"accession": stranger.accession_number.lower()},
                  token_from=f"/orthanc/studies/{study.id}", follow_redirects=True)
    page = text(r)
    assert "Link a study of another patient?" in page and links_of(stranger) == []
    r = tech.post(f"/orthanc/studies/{study.id}/link", {"request_id": stranger.id, "confirm_other_patient": "yes",
                                                         "reason": "Plate swapped at the desk"},
                  token_from=f"/orthanc/studies/{study.id}", follow_redirects=True)
    page = text(r)
    assert f"Study linked to request {stranger.accession_number}" in page and "different patients" in page


def test_a_study_deleted_in_orthanc_drops_its_link_after_reconciliation(app, orthanc, orthanc_row, order, login):
    req = order()
    ds = modality_sends(orthanc, req)
    synced(orthanc_row)
    study = study_of(ds)
    orthanc.delete_study(study.orthanc_id)
    assert sync.run(orthanc_row.id, mode="reconcile").error == ""
    db.session.expire_all()
    assert db.session.scalar(select(OrthancStudy)) is None
    assert links_of(req) == []
    assert req.images_available is False
    event = db.session.scalars(select(LinkEvent).where(LinkEvent.request_id == req.id).order_by(LinkEvent.id)).all()[-1]
    assert (event.action, event.method) == ("delete", "orthanc")
    page = text(login("doc").get(f"/requests/{req.id}"))
    assert "images available" not in page and "No study has arrived" in page


def test_a_request_whose_only_study_was_deleted_is_offered_to_the_modality_again(app, orthanc, orthanc_row, order):
    """Like a manual unlink: the request is requested and has no images, so
    its worklist item must come back (else the request page says "file
    missing" and the modality cannot redo the exam)."""
    req = order()
    ds = modality_sends(orthanc, req)
    synced(orthanc_row)
    orthanc.delete_study(study_of(ds).orthanc_id)
    assert sync.run(orthanc_row.id, mode="reconcile").error == ""
    assert wl_file(app, req).exists()
    assert [a.AccessionNumber for a in c_find(orthanc, req.accession_number)] == [req.accession_number]


# -- results --------------------------------------------------------------------------------------

@pytest.fixture
def reported(app, orthanc, orthanc_row, order, staff):
    """A request whose result was written before the images came in, then
    the modality stored the study: (request, result, dataset)."""
    req = order()
    answer = c_find(orthanc, req.accession_number)[0]
    result = workflow.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(),
                                    report="Preliminary: see images.")
    ds = acquire(answer)
    c_store(orthanc, ds)
    synced(orthanc_row)
    return db.session.get(ImagingRequest, req.id), db.session.get(Result, result.id), ds


def instance_id(orthanc, ds) -> str:
    found = orthanc.session.post(orthanc.url + "/tools/find", json={
        "Level": "Instance", "Query": {"SOPInstanceUID": str(ds.SOPInstanceUID)}}, timeout=30).json()
    assert len(found) == 1
    return found[0]


def test_a_result_written_before_the_study_arrives_shows_it_afterwards(app, orthanc, reported, login):
    req, result, ds = reported
    study = study_of(ds)
    assert [(lk.study_id, lk.method) for lk in links_of(req)] == [(study.id, "study_uid")]
    rad = login("rad")
    page = text(rad.get(f"/results/{result.id}"))
    inst = instance_id(orthanc, ds)
    assert f"/orthanc/servers/{study.server_id}/instances/{inst}/preview" in page
    assert f'name="instance_id" value="{inst}"' in page and "Add as key image" in page
    assert f"/orthanc/studies/{study.id}/archive" in page
    assert "Series 1" in page
    assert "Add as key image" not in text(login("doc").get(f"/results/{result.id}")), "only radiologists add them"


def test_adding_a_key_image_copies_orthancs_rendered_png_into_the_result(app, orthanc, reported, login):
    req, result, ds = reported
    study = study_of(ds)
    inst = instance_id(orthanc, ds)
    rad = login("rad")
    r = rad.post(f"/results/{result.id}/key-images",
                 {"server_id": study.server_id, "instance_id": inst, "caption": "PA view"},
                 token_from=f"/results/{result.id}")
    assert r.status_code == 302
    db.session.expire_all()
    result = db.session.get(Result, result.id)
    assert [(i.caption, i.content_type) for i in result.images] == [("PA view", "image/png")]
    served = rad.get(f"/results/images/{result.images[0].stored_name}")
    assert served.status_code == 200
    rendered = orthanc.session.get(f"{orthanc.url}/instances/{inst}/rendered", timeout=30).content
    assert served.data == rendered
    with Image.open(io.BytesIO(served.data)) as img:
        assert img.format == "PNG" and img.size == (32, 32)
    assert "PA view" in text(rad.get(f"/results/{result.id}/print"))
    assert any(e.action == "key image" for e in req.events)


def test_a_key_image_of_an_instance_orthanc_lacks_is_a_message_not_an_image(app, orthanc, reported, login):
    _req, result, ds = reported
    rad = login("rad")
    r = rad.post(f"/results/{result.id}/key-images",
                 {"server_id": study_of(ds).server_id, "instance_id": "00000000-00000000-00000000-00000000-00000000"},
                 token_from=f"/results/{result.id}", follow_redirects=True)
    assert r.status_code == 200 and "could not render" in text(r)
    db.session.expire_all()
    assert db.session.get(Result, result.id).images == []


def test_a_final_result_refuses_key_images(app, orthanc, reported, login, staff):
    _req, result, ds = reported
    workflow.finalise_result(result, staff["rad"])
    db.session.commit()  # the pages below are another session
    inst = instance_id(orthanc, ds)
    rad = login("rad")
    page = text(rad.get(f"/results/{result.id}"))
    assert "Add as key image" not in page
    assert f"/orthanc/servers/{study_of(ds).server_id}/instances/{inst}/preview" in page
    r = rad.post(f"/results/{result.id}/key-images", {"server_id": study_of(ds).server_id, "instance_id": inst},
                 token_from=f"/results/{result.id}", follow_redirects=True)
    assert "key images can no longer be added" in text(r)
    db.session.expire_all()
    assert db.session.get(Result, result.id).images == []


def test_a_key_image_must_come_from_a_study_linked_to_the_result(app, orthanc, reported, login):
    """Only the instance id travels in the form: an instance of another
    patient's study must not end up printed with this report."""
    _req, result, ds = reported
    foreign = dicomgen.make_instance("SOMEONE-ELSE", "OTHER^PATIENT", rows=16, cols=16)
    orthanc.upload(foreign)
    rad = login("rad")
    r = rad.post(f"/results/{result.id}/key-images",
                 {"server_id": study_of(ds).server_id, "instance_id": instance_id(orthanc, foreign)},
                 token_from=f"/results/{result.id}")
    assert r.status_code in (302, 404)
    db.session.expire_all()
    assert db.session.get(Result, result.id).images == []


def test_a_rejected_addendum_still_shows_the_linked_study(app, orthanc, reported, login, staff):
    _req, result, ds = reported
    workflow.finalise_result(result, staff["rad"])
    db.session.commit()  # the pages below are another session
    rad = login("rad")
    r = rad.post(f"/results/{result.id}/addenda", {"text": ""}, token_from=f"/results/{result.id}")
    assert r.status_code == 400
    assert f"/orthanc/studies/{study_of(ds).id}/archive" in r.get_data(as_text=True)


# -- download ---------------------------------------------------------------------------------------

def test_download_study_is_a_real_zip_holding_the_dicom(app, orthanc, orthanc_row, order, login):
    req = order()
    ds = modality_sends(orthanc, req)
    synced(orthanc_row)
    study = study_of(ds)
    doc = login("doc")
    assert f'href="/orthanc/studies/{study.id}/archive">Download study (ZIP)' in doc.get(
        f"/orthanc/studies/{study.id}").get_data(as_text=True)
    # buffered: the streamed body is read inside the request's own context,
    # as a WSGI server does (the test client's isolated context would end first)
    r = doc.get(f"/orthanc/studies/{study.id}/archive", buffered=True)
    assert r.status_code == 200 and r.mimetype == "application/zip"
    assert r.headers["Content-Disposition"] == f'attachment; filename="study-{req.accession_number}.zip"'
    assert "no-store" in r.headers["Cache-Control"]
    with zipfile.ZipFile(io.BytesIO(r.data)) as z:
        assert z.testzip() is None
        members = [n for n in z.namelist() if not n.endswith("/")]
        assert len(members) == 1
        got = pydicom.dcmread(io.BytesIO(z.read(members[0])))
    assert got.SOPInstanceUID == ds.SOPInstanceUID and got.AccessionNumber == req.accession_number


def test_download_study_needs_login(app, orthanc, orthanc_row, order, client):
    req = order()
    modality_sends(orthanc, req)
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy))
    r = client.get(f"/orthanc/studies/{study.id}/archive")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_download_while_orthanc_is_down_is_a_message_on_the_study_page(app, orthanc, orthanc_row, order, login):
    req = order()
    modality_sends(orthanc, req)
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy))
    orthanc.kill()
    r = login("doc").get(f"/orthanc/studies/{study.id}/archive")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/orthanc/studies/{study.id}")


def test_download_of_a_study_gone_from_orthanc_is_404(app, orthanc, orthanc_row, order, login):
    req = order()
    modality_sends(orthanc, req)
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy))
    orthanc.delete_study(study.orthanc_id)
    assert login("doc").get(f"/orthanc/studies/{study.id}/archive").status_code == 404


# -- the merge-id rule --------------------------------------------------------------------------------

def merge_id_study(orthanc, req) -> Dataset:
    """A modality that rewrote both numbers but kept GNU Health's merge id
    (ORG_ROOT.9.<request id>) in the study description."""
    return modality_sends(orthanc, req, keep_uid=False, keep_accession=False,
                          study_description=f"{ORG_ROOT}.9.{req.id}")


def test_the_merge_id_rule_is_off_by_default(app, orthanc, orthanc_row, order):
    assert app.config["MATCH_MERGE_ID"] is False
    req = order()
    ds = merge_id_study(orthanc, req)
    synced(orthanc_row)
    study = study_of(ds)
    assert study.description == f"{ORG_ROOT}.9.{req.id}"
    assert links_of(req) == []
    from ghimaging.orthanc import matching

    assert study.id in {s.id for s in db.session.scalars(matching.unmatched())}


def test_the_merge_id_rule_links_when_switched_on(app, orthanc, orthanc_row, order):
    app.config["MATCH_MERGE_ID"] = True
    req = order()
    ds = merge_id_study(orthanc, req)
    synced(orthanc_row)
    study = study_of(ds)
    assert [(lk.study_id, lk.method) for lk in links_of(req)] == [(study.id, "merge_id")]
    db.session.refresh(req)
    assert req.images_available is True and not wl_file(app, req).exists()
