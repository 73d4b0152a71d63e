"""The study-link endpoints of /api/v1: POST /studies/<id>/link and /unlink
({"request_id"}), GET /studies/unmatched with likely requests, and their
OpenAPI description; studies synced from a real Orthanc 1.10.1."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, LinkEvent, OrthancStudy, StudyLink
from ghimaging.orthanc import sync
from tests.support import dicomgen

TODAY = date.today().strftime("%Y%m%d")


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician")


@pytest.fixture
def walk_in(app, orthanc_row, upload, create_patient, create_request, doc, catalog):
    """A submitted chest X-ray for HOSP-1 and a study of HOSP-1 whose numbers
    match nothing (a walk-in, or a modality that rewrote both):
    (request, study row)."""
    patient = create_patient(puid="HOSP-1", family_name="Okafor", given_name="Amina")
    req = create_request(patient, catalog["chest"], submit=True, user=doc)
    upload([dicomgen.make_instance("HOSP-1", "OKAFOR^AMINA", accession="MOD-777", modality="CR",
                                   study_date=TODAY, study_description="CHEST", rows=16, cols=16)])
    assert sync.run(orthanc_row.id).error == ""
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy))
    assert db.session.scalar(select(StudyLink)) is None
    return req, study


def wl_path(app, req) -> Path:
    return Path(app.config["WORKLIST_DIR"]) / f"{req.accession_number}.wl"


def link(client, study_id, body):
    return client.post(f"/api/v1/studies/{study_id}/link", json=body)


def unlink(client, study_id, body):
    return client.post(f"/api/v1/studies/{study_id}/unlink", json=body)


# -- link -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["physician", "technologist", "radiologist", "admin"])
def test_any_member_of_staff_links_a_study_to_a_request(app, walk_in, api, role):
    req, study = walk_in
    client = api(role)
    assert wl_path(app, req).exists()
    r = link(client, study.id, {"request_id": req.id})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.json["id"] == study.id and r.json["study_instance_uid"] == study.study_uid
    assert r.json["requests"] == [req.id] and r.json["warning"] is None

    db.session.expire_all()
    row = db.session.scalar(select(StudyLink))
    assert (row.study_id, row.request_id, row.method, row.created_by_id) == (study.id, req.id, "manual", client.user.id)
    event = db.session.scalar(select(LinkEvent))
    assert (event.action, event.method, event.user_id, event.request_id) == ("link", "manual", client.user.id, req.id)
    assert not wl_path(app, req).exists(), "the modality is done: the item leaves the worklist"
    got = client.get(f"/api/v1/requests/{req.id}").json
    assert got["images_available"] is True
    keys = ("id", "study_instance_uid", "orthanc_id", "server", "method")
    assert [{k: s[k] for k in keys} for s in got["studies"]] == [
        {"id": study.id, "study_instance_uid": study.study_uid, "orthanc_id": study.orthanc_id,
         "server": "Main", "method": "manual"}]


def test_linking_the_same_pair_twice_is_409(app, walk_in, api):
    req, study = walk_in
    client = api("technologist")
    assert link(client, study.id, {"request_id": req.id}).status_code == 201
    r = link(client, study.id, {"request_id": req.id})
    assert r.status_code == 409 and r.json["error"] == "conflict"
    assert "already linked" in r.json["message"]
    db.session.expire_all()
    assert len(db.session.scalars(select(StudyLink)).all()) == 1


def test_a_cancelled_request_cannot_be_linked(app, walk_in, api, doc):
    req, study = walk_in
    workflow.cancel(req, doc, "Patient left")
    r = link(api("technologist"), study.id, {"request_id": req.id})
    assert r.status_code == 409 and "cancelled" in r.json["message"]
    assert db.session.scalar(select(StudyLink)) is None


@pytest.mark.parametrize("body", [{}, {"request_id": None}, {"request_id": "1"}, {"request_id": 1.5},
                                  {"request_id": True}, {"request_id": 0}, {"request_id": -3},
                                  {"request_id": 2**63}, {"request_id": 10**30}, {"request_id": 987654},
                                  {"request_id": [1]}],
                         ids=["missing", "null", "string", "float", "bool", "zero", "negative", "int64", "huge",
                              "unknown", "list"])
@pytest.mark.parametrize("action", [link, unlink], ids=["link", "unlink"])
def test_a_bad_request_id_is_422(app, walk_in, api, body, action):
    _req, study = walk_in
    r = action(api("technologist"), study.id, body)
    assert r.status_code == 422, r.get_data(as_text=True)
    assert r.json["error"] == "validation" and "request_id" in r.json["fields"]
    assert db.session.scalar(select(StudyLink)) is None


@pytest.mark.parametrize("kw", [{"json": [1]}, {"json": "x"}, {"data": "request_id=1"},
                                {"data": "{not json", "content_type": "application/json"}],
                         ids=["list", "string", "form", "broken-json"])
def test_a_body_that_is_not_a_json_object_is_400(app, walk_in, api, kw):
    _req, study = walk_in
    client = api("technologist")
    r = client.client.post(f"/api/v1/studies/{study.id}/link", headers=client.headers, **kw)
    assert r.status_code == 400 and r.json["error"] == "bad_request"


@pytest.mark.parametrize("study_id", ["999999", "0", "99999999999999999999"])
@pytest.mark.parametrize("action", ["link", "unlink"])
def test_an_unknown_study_is_404(app, walk_in, api, study_id, action):
    req, _study = walk_in
    client = api("technologist")
    r = client.post(f"/api/v1/studies/{study_id}/{action}", json={"request_id": req.id})
    assert r.status_code == 404 and r.json["error"] == "not_found"


def test_link_and_unlink_need_a_token(app, walk_in, client):
    req, study = walk_in
    for action in ("link", "unlink"):
        assert client.post(f"/api/v1/studies/{study.id}/{action}", json={"request_id": req.id}).status_code == 401
        r = client.post(f"/api/v1/studies/{study.id}/{action}", json={"request_id": req.id},
                        headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401
    assert db.session.scalar(select(StudyLink)) is None


# -- unlink -------------------------------------------------------------------------------------

def test_unlink_answers_the_study_without_the_request_and_records_who(app, walk_in, api):
    req, study = walk_in
    tech, rad = api("technologist"), api("radiologist")
    assert link(tech, study.id, {"request_id": req.id}).status_code == 201
    r = unlink(rad, study.id, {"request_id": req.id})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["id"] == study.id and r.json["requests"] == []
    db.session.expire_all()
    assert db.session.scalar(select(StudyLink)) is None
    assert db.session.get(ImagingRequest, req.id).images_available is False
    events = db.session.scalars(select(LinkEvent).order_by(LinkEvent.id)).all()
    assert [(e.action, e.method, e.user_id) for e in events] == [("link", "manual", tech.user.id),
                                                                 ("unlink", "manual", rad.user.id)]
    assert wl_path(app, req).exists(), "still requested, no images: back on the worklist"
    assert rad.get(f"/api/v1/requests/{req.id}").json["studies"] == []


def test_unlinking_a_pair_that_is_not_linked_is_409(app, walk_in, api):
    req, study = walk_in
    r = unlink(api("physician"), study.id, {"request_id": req.id})
    assert r.status_code == 409 and "not linked" in r.json["message"]
    assert db.session.scalar(select(LinkEvent)) is None


def test_a_study_linked_by_hand_and_unlinked_is_unmatched_again(app, walk_in, api):
    req, study = walk_in
    client = api("technologist")
    link(client, study.id, {"request_id": req.id})
    assert client.get("/api/v1/studies/unmatched").json["items"] == []
    unlink(client, study.id, {"request_id": req.id})
    assert [s["id"] for s in client.get("/api/v1/studies/unmatched").json["items"]] == [study.id]


# -- unmatched ------------------------------------------------------------------------------------

def test_unmatched_lists_studies_without_a_request_with_likely_requests(
        app, walk_in, api, create_request, create_patient, catalog, doc):
    req, study = walk_in
    other = create_request(create_patient(family_name="Else"), catalog["abd"], submit=True, user=doc)
    got = api("radiologist").get("/api/v1/studies/unmatched").json
    assert got["total"] == 1 and got["page"] == 1
    item = got["items"][0]
    assert (item["id"], item["study_instance_uid"], item["patient_id"]) == (study.id, study.study_uid, "HOSP-1")
    assert item["suggestions"][0] == {"request_id": req.id, "accession_number": req.accession_number,
                                      "same_patient": True,
                                      "reasons": ["same patient (PatientID = PUID)", "same modality (CR)",
                                                  "ordered within a few days"]}
    assert other.id not in [s["request_id"] for s in item["suggestions"]], \
        "another patient's ultrasound is not a likely request for this chest X-ray"


def test_another_patients_request_that_already_has_its_study_is_not_suggested(
        app, walk_in, api, upload, orthanc_row, create_request, create_patient, catalog, doc):
    """Same modality and day, but another patient whose images are already
    linked: offering it invites linking a study to the wrong patient."""
    req, study = walk_in
    matched = create_request(create_patient(puid="HOSP-2"), catalog["chest"], submit=True, user=doc)
    upload([dicomgen.make_instance("HOSP-2", "X^Y", accession=matched.accession_number, study_date=TODAY,
                                   rows=16, cols=16)])
    assert sync.run(orthanc_row.id).error == ""
    db.session.expire_all()
    assert db.session.get(ImagingRequest, matched.id).images_available is True
    item = api("radiologist").get("/api/v1/studies/unmatched").json["items"][0]
    assert item["id"] == study.id
    assert [s["request_id"] for s in item["suggestions"]] == [req.id]


def test_unmatched_is_paged(app, orthanc_row, upload, api):
    upload([dicomgen.make_instance(f"P{i}", "A^B", accession=f"X{i}", rows=16, cols=16) for i in range(3)])
    assert sync.run(orthanc_row.id).error == ""
    client = api("technologist")
    pages = [client.get(f"/api/v1/studies/unmatched?per_page=2&page={n}").json for n in (1, 2)]
    assert [p["total"] for p in pages] == [3, 3]
    ids = [s["id"] for p in pages for s in p["items"]]
    assert len(ids) == 3 == len(set(ids))
    assert all(s["suggestions"] == [] for p in pages for s in p["items"])


def test_unmatched_needs_a_token(app, client):
    assert client.get("/api/v1/studies/unmatched").status_code == 401


# -- OpenAPI ------------------------------------------------------------------------------------------

def test_openapi_documents_link_unlink_and_unmatched(app, client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    link_op = paths["/studies/{id}/link"]["post"]
    assert {"201", "400", "404", "409", "422"} <= set(link_op["responses"])
    schema = link_op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["request_id"] and schema["properties"]["request_id"]["type"] == "integer"
    unlink_op = paths["/studies/{id}/unlink"]["post"]
    assert {"200", "400", "404", "409", "422"} <= set(unlink_op["responses"])
    assert "get" in paths["/studies/unmatched"]
    names = {p["name"] for p in paths["/studies/unmatched"]["get"].get("parameters", [])}
    assert {"page", "per_page"} <= names


def test_link_errors_are_conflicts_that_the_api_answers_with_409():
    from ghimaging.api.errors import from_domain
    from ghimaging.orthanc import matching

    plain, other = from_domain(matching.LinkError("no")), from_domain(matching.OtherPatientError("no"))
    assert (plain.status, plain.error) == (409, "conflict")
    assert (other.status, other.error) == (409, "other_patient")
