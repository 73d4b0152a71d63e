"""/api/v1 for mirrored studies and Orthanc sync, against data synced from a
real Orthanc 1.10.1."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import OrthancStudy
from ghimaging.orthanc import sync
from tests.support import dicomgen


def gen(n_patients, studies=1, series=1, seed=0):
    return list(dicomgen.generate_studies(n_patients, studies, series, seed=seed, rows=16, cols=16))


@pytest.fixture
def synced(orthanc_row, upload):
    """Two patients: G0-00000 with two studies (two series each), G0-00001 with two."""
    upload(gen(2, studies=2, series=2))
    assert sync.run(orthanc_row.id).error == ""
    return orthanc_row


def row(accession: str) -> OrthancStudy:
    db.session.expire_all()
    return db.session.scalar(select(OrthancStudy).where(OrthancStudy.accession_number == accession))


# -- studies ---------------------------------------------------------------------------------

def test_studies_are_found_by_study_uid_accession_or_patient_id(app, synced, api):
    client = api("physician")
    target = row("A0-00001-01")

    r = client.get("/api/v1/studies", query_string={"study_instance_uid": target.study_uid})
    assert r.status_code == 200 and r.json["total"] == 1
    found = r.json["items"][0]
    assert found["id"] == target.id and found["accession_number"] == "A0-00001-01"
    assert found["patient_id"] == "G0-00001" and found["server"] == "Main" and found["server_id"] == synced.id
    assert found["orthanc_id"] == target.orthanc_id and found["series_count"] == 2 and found["instance_count"] == 2
    assert found["study_date"] == target.study_date and found["modalities"] == target.modality_list
    assert found["institution"] == "GHIMAGING TEST CLINIC" and found["local_patient_id"] is None

    r = client.get("/api/v1/studies?accession_number=A0-00000-00")
    assert [s["accession_number"] for s in r.json["items"]] == ["A0-00000-00"]
    r = client.get("/api/v1/studies?patient_id=G0-00001")
    assert sorted(s["accession_number"] for s in r.json["items"]) == ["A0-00001-00", "A0-00001-01"]
    r = client.get("/api/v1/studies?patient_id=G0-00001&accession_number=A0-00000-00")
    assert r.json["total"] == 0 and r.json["items"] == []  # filters combine
    assert client.get("/api/v1/studies").json["total"] == 4


def test_study_filters_match_exactly_not_by_substring(app, synced, api):
    client = api("technologist")
    assert client.get("/api/v1/studies?patient_id=G0").json["total"] == 0
    assert client.get("/api/v1/studies?accession_number=a0-00000-00").json["total"] == 0
    assert client.get("/api/v1/studies?study_instance_uid=%25").json["total"] == 0


def test_studies_are_paged(app, synced, api):
    client = api("radiologist")
    first = client.get("/api/v1/studies?per_page=3")
    second = client.get("/api/v1/studies?per_page=3&page=2")
    assert first.json["total"] == 4 and len(first.json["items"]) == 3 and len(second.json["items"]) == 1
    ids = [s["id"] for s in first.json["items"] + second.json["items"]]
    assert len(set(ids)) == 4


@pytest.mark.parametrize("query", ["server_id=abc", "server_id=-1", "page=0", "page=abc", "per_page=1000",
                                   "per_page=0"])
def test_bad_study_query_parameters_answer_400(app, api, query):
    r = api("physician").get(f"/api/v1/studies?{query}")
    assert r.status_code == 400 and r.json["error"] == "bad_request"


@pytest.mark.parametrize("path", ["/api/v1/studies?server_id=99999999999999999999",
                                  "/api/v1/studies?page=99999999999999999999",
                                  "/api/v1/studies/99999999999999999999",
                                  "/api/v1/studies?patient_id=%00", "/api/v1/studies?accession_number=A%00B"])
def test_absurd_values_in_study_requests_do_not_give_a_500(app, api, path):
    """Numbers past the column's range (SQLite: OverflowError, PostgreSQL: integer out of
    range) and NUL characters (PostgreSQL refuses them in text) are bad input, not crashes."""
    assert api("physician").get(path).status_code in (200, 400, 404)


def test_study_filter_by_server(app, synced, api):
    client = api("physician")
    assert client.get(f"/api/v1/studies?server_id={synced.id}").json["total"] == 4
    assert client.get(f"/api/v1/studies?server_id={synced.id + 1}").json["total"] == 0


def test_one_study_with_its_series(app, synced, api, orthanc):
    target = row("A0-00000-01")
    r = api("physician").get(f"/api/v1/studies/{target.id}")
    assert r.status_code == 200
    assert r.json["study_instance_uid"] == target.study_uid and r.json["accession_number"] == "A0-00000-01"
    series = r.json["series"]
    in_orthanc = {s["MainDicomTags"]["SeriesInstanceUID"]: s for s in orthanc.get(f"/studies/{target.orthanc_id}/series")}
    assert {s["series_instance_uid"] for s in series} == set(in_orthanc)
    for s in series:
        assert s["orthanc_id"] == in_orthanc[s["series_instance_uid"]]["ID"]
        assert s["instance_count"] == 1 and s["number"] in (1, 2) and s["modality"]


def test_unknown_study_is_404(app, api):
    client = api("physician")
    r = client.get("/api/v1/studies/424242")
    assert r.status_code == 404 and r.json["error"] == "not_found"


def test_studies_need_a_token(app, client, synced):
    assert client.get("/api/v1/studies").status_code == 401
    assert client.get(f"/api/v1/studies/{row('A0-00000-00').id}").status_code == 401


def test_a_study_of_a_linked_patient_carries_the_local_patient_id(app, orthanc_row, upload, api, create_patient):
    local = create_patient(puid="G0-00000")
    upload(gen(1))
    sync.run(orthanc_row.id)
    r = api("physician").get("/api/v1/studies?patient_id=G0-00000")
    assert r.json["items"][0]["local_patient_id"] == local.id


# -- sync ---------------------------------------------------------------------------------------

def test_sync_answers_a_json_summary(app, orthanc_row, upload, api):
    client = api("technologist")
    upload(gen(2))
    r = client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync")
    assert r.status_code == 200, r.json
    s = r.json
    assert s["server"] == "Main" and s["mode"] == "full" and s["studies_updated"] == 2
    assert s["error"] == "" and s["skipped"] == "" and s["requests"] >= 1 and s["last_change"] > 0

    upload(gen(1, seed=3))
    s = client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync").json
    assert s["mode"] == "incremental" and s["studies_updated"] == 1 and s["changes"] > 0

    s = client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync?full=1").json
    assert s["mode"] == "full" and s["studies_updated"] == 3
    assert client.get("/api/v1/studies").json["total"] == 3


def test_sync_of_an_unknown_server_is_404(app, api):
    r = api("technologist").post("/api/v1/orthanc/servers/4242/sync")
    assert r.status_code == 404 and r.json["error"] == "not_found"


@pytest.mark.parametrize("role", ["physician", "radiologist"])
def test_sync_is_refused_to_physicians_and_radiologists(app, orthanc_row, upload, api, role):
    upload(gen(1))
    r = api(role).post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync")
    assert r.status_code == 403
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(OrthancStudy)) == 0


def test_sync_answers_409_while_another_runner_holds_the_lease(app, orthanc_row, upload, api):
    upload(gen(1))
    assert sync.acquire_lease(orthanc_row.id, "other-host:123")
    client = api("admin")
    r = client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync")
    assert r.status_code == 409 and "another sync" in r.json["skipped"]
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(OrthancStudy)) == 0
    sync.release_lease(orthanc_row.id, "other-host:123")
    assert client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync").status_code == 200


def test_sync_of_an_orthanc_that_is_down_answers_502_with_the_reason(app, orthanc_row, orthanc, api):
    orthanc.kill()
    r = api("technologist").post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync")
    assert r.status_code == 502 and "connection refused" in r.json["error"]


def test_sync_needs_a_token(app, client, orthanc_row):
    assert client.post(f"/api/v1/orthanc/servers/{orthanc_row.id}/sync").status_code == 401


# -- OpenAPI ---------------------------------------------------------------------------------

def test_openapi_documents_the_orthanc_and_study_endpoints(app, client):
    doc = client.get("/api/v1/openapi.json").json
    paths = doc["paths"]
    assert {"get", "post"} <= set(paths["/orthanc/servers"])
    assert {"409", "422"} <= set(paths["/orthanc/servers"]["post"]["responses"])
    body = paths["/orthanc/servers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ServerIn"}
    server_in = doc["components"]["schemas"]["ServerIn"]["properties"]
    assert {"label", "url", "username", "password", "browser_url"} <= set(server_in)
    assert "password" not in doc["components"]["schemas"]["Server"]["properties"]

    sync_op = paths["/orthanc/servers/{id}/sync"]["post"]
    assert "full" in {p["name"] for p in sync_op["parameters"]}
    studies = paths["/studies"]["get"]
    assert {"study_instance_uid", "accession_number", "patient_id"} <= {p["name"] for p in studies["parameters"]}
    assert "get" in paths["/studies/{id}"]


def test_openapi_lists_every_status_the_sync_endpoint_answers(app, client):
    """The endpoint answers 200, 403, 404, 409 (lease held) and 502 (Orthanc failed)."""
    responses = client.get("/api/v1/openapi.json").json["paths"]["/orthanc/servers/{id}/sync"]["post"]["responses"]
    assert {"200", "403", "404", "409", "502"} <= set(responses)
