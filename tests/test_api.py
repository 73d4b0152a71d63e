"""The JSON API at /api/v1: authentication, every endpoint, every error code."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, Patient, Result

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
PATIENT = {"puid": "API-0001", "family_name": "Silva", "given_name": "Ana", "birth_date": "1975-04-30", "sex": "F"}



@pytest.fixture
def doc(api, catalog):
    return api("physician")


@pytest.fixture
def patient(create_patient):
    return create_patient(puid="API-PAT", family_name="Mwangi", given_name="Joy")


def assert_error(r, status: int, error: str | None = None):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.is_json, r.get_data(as_text=True)[:200]
    body = r.get_json()
    assert isinstance(body["message"], str) and body["message"]
    if error:
        assert body["error"] == error
    return body


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def order(client, patient, **kw):
    data = {"patient_id": patient.id, "test_code": "XR-CHEST", "urgent": False, "comment": ""}
    data.update(kw)
    return client.post("/api/v1/requests", json=data)


# -- authentication -----------------------------------------------------------

@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc",
                                    "Bearer ghi_not-a-real-token"])
def test_missing_or_invalid_token_is_401(client, header, catalog):
    headers = {"Authorization": header} if header is not None else {}
    for method, path in [("get", "/api/v1/patients"), ("get", "/api/v1/requests"), ("get", "/api/v1/tests"),
                         ("post", "/api/v1/patients"), ("post", "/api/v1/requests/1/submit")]:
        r = getattr(client, method)(path, headers=headers, json={})
        assert_error(r, 401, "unauthorized")
    assert count(Patient) == 0


def test_a_revoked_token_is_401(app, api):
    from ghimaging.auth.service import revoke_token
    from ghimaging.models import ApiToken

    c = api("physician")
    assert c.get("/api/v1/patients").status_code == 200
    assert revoke_token(c.user, db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == c.user.id)))
    db.session.commit()
    assert_error(c.get("/api/v1/patients"), 401)


def test_a_disabled_users_token_is_401(api):
    c = api("physician")
    c.user.active = False
    db.session.commit()
    assert_error(c.get("/api/v1/patients"), 401)


def test_the_token_scheme_is_case_insensitive(api):
    c = api("physician")
    token = c.headers["Authorization"].split(" ", 1)[1]
    assert c.client.get("/api/v1/me", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_me_names_the_token_owner(api):
    c = api("physician", "radiologist")
    assert c.get("/api/v1/me").get_json() == {"id": c.user.id, "username": c.user.username,
                                              "roles": ["physician", "radiologist"]}


def test_api_sets_no_cookie_and_is_not_cached(api):
    r = api("physician").get("/api/v1/patients")
    assert "Set-Cookie" not in r.headers
    assert r.headers["Cache-Control"] == "no-store"


# -- bad bodies ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/patients", "/api/v1/requests", "/api/v1/tests"])
@pytest.mark.parametrize("raw,ctype", [
    ("{not json", "application/json"),
    ('{"puid": "X"', "application/json"),
    ("", "application/json"),
    ('{"puid": "X"}', "text/plain"),
    ("[1, 2]", "application/json"),
    ('"a string"', "application/json"),
    ("null", "application/json"),
    ("42", "application/json"),
])
def test_malformed_json_or_a_non_object_body_is_400(api, catalog, path, raw, ctype):
    c = api("admin")
    r = c.client.post(path, data=raw, content_type=ctype, headers=c.headers)
    assert_error(r, 400, "bad_request")
    assert count(Patient) == 0 and count(ImagingRequest) == 0


# -- patients -----------------------------------------------------------------

def test_create_patient_answers_201_with_the_patient(api):
    r = api("technologist").post("/api/v1/patients", json=PATIENT)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body == {**PATIENT, "id": body["id"], "phone": "", "notes": "", "alerts": ""}
    assert r.headers["Location"].endswith(f"/api/v1/patients/{body['id']}")


def test_duplicate_puid_is_409(api):
    c = api("physician")
    assert c.post("/api/v1/patients", json=PATIENT).status_code == 201
    body = assert_error(c.post("/api/v1/patients", json={**PATIENT, "family_name": "Other"}), 409, "conflict")
    assert "API-0001" in body["message"]
    assert count(Patient) == 1


@pytest.mark.parametrize("field,value", [
    ("puid", 123), ("family_name", ["Silva"]), ("given_name", {"a": 1}), ("birth_date", 19750430),
    ("sex", True), ("phone", 5551234), ("notes", 1.5),
])
def test_patient_fields_of_the_wrong_type_are_422(api, field, value):
    body = assert_error(api("physician").post("/api/v1/patients", json={**PATIENT, field: value}), 422, "validation")
    assert set(body["fields"]) == {field} and body["fields"][field]
    assert count(Patient) == 0


def test_every_mistyped_patient_field_is_reported_at_once(api):
    body = assert_error(api("physician").post("/api/v1/patients", json={**PATIENT, "puid": 1, "sex": 2}), 422)
    assert set(body["fields"]) == {"puid", "sex"}


@pytest.mark.parametrize("change,fields", [
    ({"puid": ""}, {"puid"}),
    ({"sex": "X"}, {"sex"}),
    ({"birth_date": "30/04/1975"}, {"birth_date"}),
    ({"birth_date": "2999-01-01"}, {"birth_date"}),
    ({"family_name": "", "sex": "Q"}, {"family_name", "sex"}),
    ({"puid": "A" * 65}, {"puid"}),
    ({"given_name": "Ana^Maria"}, {"given_name"}),
])
def test_invalid_patient_values_are_422_per_field(api, change, fields):
    body = assert_error(api("physician").post("/api/v1/patients", json={**PATIENT, **change}), 422, "validation")
    assert set(body["fields"]) == fields
    assert all(isinstance(m, str) and m for m in body["fields"].values())


def test_radiologist_cannot_register_patients(api):
    assert_error(api("radiologist").post("/api/v1/patients", json=PATIENT), 403, "forbidden")
    assert count(Patient) == 0


def test_get_patient_by_id_and_404(api, patient):
    c = api("radiologist")
    assert c.get(f"/api/v1/patients/{patient.id}").get_json()["puid"] == "API-PAT"
    assert_error(c.get("/api/v1/patients/999999"), 404, "not_found")


def test_find_patient_by_puid(api, patient, create_patient):
    create_patient(puid="API-PAT-2")
    c = api("technologist")
    body = c.get("/api/v1/patients?puid=API-PAT").get_json()
    assert [p["id"] for p in body["items"]] == [patient.id] and body["total"] == 1
    assert c.get("/api/v1/patients?puid=NOPE").get_json() == {"items": [], "page": 1, "per_page": 1, "total": 0}


def test_list_and_search_patients_with_paging(api, create_patient):
    for n in range(5):
        create_patient(puid=f"LP-{n}", family_name=f"Zulu{n}")
    create_patient(puid="OTHER", family_name="Alpha")
    c = api("physician")
    body = c.get("/api/v1/patients?q=zulu&per_page=2&page=2").get_json()
    assert [p["puid"] for p in body["items"]] == ["LP-2", "LP-3"]
    assert (body["page"], body["per_page"], body["total"]) == (2, 2, 5)
    assert c.get("/api/v1/patients").get_json()["total"] == 6


@pytest.mark.parametrize("query", ["page=0", "page=x", "per_page=0", "per_page=201", "per_page=1.5"])
def test_bad_paging_is_400(api, query):
    assert_error(api("physician").get(f"/api/v1/patients?{query}"), 400, "bad_request")


# -- tests (catalogue) --------------------------------------------------------

TEST = {"code": "CT-HEAD", "name": "CT head without contrast", "modality": "CT", "ae_title": "CT1"}


def test_list_tests_hides_inactive_unless_asked(api, catalog):
    from ghimaging.catalog.service import save_test

    t = catalog["abd"]
    save_test(t, code=t.code, name=t.name, modality=t.modality, ae_title=t.ae_title, active=False)
    c = api("technologist")
    assert [t["code"] for t in c.get("/api/v1/tests").get_json()["items"]] == ["XR-CHEST"]
    assert {t["code"] for t in c.get("/api/v1/tests?all=1").get_json()["items"]} == {"XR-CHEST", "US-ABD"}
    chest = c.get("/api/v1/tests").get_json()["items"][0]
    assert chest == {"id": catalog["chest"].id, "code": "XR-CHEST", "name": "Chest X-ray PA", "modality": "CR",
                     "ae_title": "XRAY1", "worklist_template": "", "active": True}


def test_admin_creates_a_test(api, catalog):
    r = api("admin").post("/api/v1/tests", json=TEST)
    assert r.status_code == 201, r.get_json()
    assert {k: r.get_json()[k] for k in TEST} == TEST


@pytest.mark.parametrize("role", ["physician", "technologist", "radiologist"])
def test_only_admins_create_tests(api, catalog, role):
    assert_error(api(role).post("/api/v1/tests", json=TEST), 403, "forbidden")


def test_duplicate_test_code_is_409(api, catalog):
    assert_error(api("admin").post("/api/v1/tests", json={**TEST, "code": "xr-chest"}), 409, "conflict")


@pytest.mark.parametrize("change,field", [
    ({"modality": "ZZ"}, "modality"),
    ({"modality": None}, "modality"),
    ({"modality": 7}, "modality"),
    ({"code": 12}, "code"),
    ({"code": ""}, "code"),
    ({"name": ""}, "name"),
    ({"ae_title": "BAD\\AE"}, "ae_title"),
    ({"ae_title": "A" * 17}, "ae_title"),
    ({"active": "no"}, "active"),
])
def test_invalid_test_fields_are_422(api, catalog, change, field):
    body = assert_error(api("admin").post("/api/v1/tests", json={**TEST, **change}), 422, "validation")
    assert field in body["fields"]
    assert len(api("admin").get("/api/v1/tests?all=1").get_json()["items"]) == 2


# -- requests -----------------------------------------------------------------

def test_create_request_answers_201_with_numbers_and_state(doc, patient):
    r = order(doc, patient, urgent=True, comment="portable")
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["state"] == "draft"
    assert isinstance(body["id"], int)
    assert re.fullmatch(r"GH\d+", body["accession_number"]) and len(body["accession_number"]) <= 16
    assert body["study_instance_uid"].startswith("2.25.") and UID_RE.match(body["study_instance_uid"])
    assert len(body["study_instance_uid"]) <= 64
    assert (body["patient_id"], body["test_code"], body["urgent"], body["comment"]) == \
        (patient.id, "XR-CHEST", True, "portable")
    assert body["requesting_physician"] == doc.user.username
    assert r.headers["Location"].endswith(f"/api/v1/requests/{body['id']}")
    assert [(e["action"], e["to"], e["user"]) for e in body["events"]] == [("create", "draft", doc.user.username)]


def test_create_request_submitted_at_once(doc, patient):
    submitted = order(doc, patient, submit=True).get_json()
    assert (submitted["state"], submitted["progress"]) == ("requested", "scheduled")


def test_several_tests_share_one_order_number(doc, patient):
    r = doc.post("/api/v1/requests", json={"patient_id": patient.id, "test_codes": ["XR-CHEST", "US-ABD"]})
    assert r.status_code == 201
    body = r.get_json()
    assert len(body["items"]) == 2
    assert {i["order_number"] for i in body["items"]} == {body["order_number"]}
    assert len({i["accession_number"] for i in body["items"]}) == 2


@pytest.mark.parametrize("change,field", [
    ({"patient_id": "1"}, "patient_id"),
    ({"patient_id": True}, "patient_id"),
    ({"patient_id": None}, "patient_id"),
    ({"patient_id": 999999}, "patient_id"),
    ({"test_code": 5}, "test_code"),
    ({"test_code": ""}, "test_code"),
    ({"test_code": "NO-SUCH"}, "test_code"),
    ({"test_codes": "XR-CHEST"}, "test_code"),
    ({"urgent": "yes"}, "urgent"),
    ({"urgent": 1}, "urgent"),
    ({"comment": ["a"]}, "comment"),
    ({"submit": "true"}, "submit"),
    ({"scheduled_at": "tomorrow"}, "scheduled_at"),
    ({"physician": "nobody-here"}, "physician"),
])
def test_invalid_request_fields_are_422_per_field(doc, patient, change, field):
    body = assert_error(order(doc, patient, **change), 422, "validation")
    assert field in body["fields"] and body["fields"][field]
    assert count(ImagingRequest) == 0


def test_an_inactive_test_is_422(doc, patient, catalog):
    from ghimaging.catalog.service import save_test

    t = catalog["chest"]
    save_test(t, code=t.code, name=t.name, modality=t.modality, ae_title=t.ae_title, active=False)
    db.session.commit()
    body = assert_error(order(doc, patient), 422, "validation")
    assert "tests" in body["fields"]


def test_a_requesting_physician_without_the_role_is_422(api, doc, patient):
    tech = api("technologist")
    body = assert_error(order(doc, patient, physician=tech.user.username), 422)
    assert "physician" in body["fields"]


@pytest.mark.parametrize("role", ["technologist", "radiologist"])
def test_only_physicians_order(api, patient, catalog, role):
    assert_error(order(api(role), patient), 403, "forbidden")
    assert count(ImagingRequest) == 0


def test_get_request_with_events_and_404(doc, patient):
    rid = order(doc, patient).get_json()["id"]
    body = doc.get(f"/api/v1/requests/{rid}").get_json()
    assert body["id"] == rid and body["result"] is None and len(body["events"]) == 1
    assert_error(doc.get("/api/v1/requests/999999"), 404, "not_found")


def test_list_requests_filters_by_state_and_patient(doc, patient, create_patient):
    other = create_patient()
    a = order(doc, patient).get_json()["id"]
    b = order(doc, patient, submit=True).get_json()["id"]
    c = order(doc, other, submit=True, urgent=True).get_json()["id"]

    def ids(query):
        r = doc.get(f"/api/v1/requests?{query}")
        assert r.status_code == 200, r.get_json()
        return [i["id"] for i in r.get_json()["items"]]

    assert ids("") == [c, b, a]  # urgent first, then newest
    assert ids("state=requested") == [c, b]
    assert ids("state=draft") == [a]
    assert ids(f"patient_id={patient.id}") == [b, a]
    assert ids(f"state=requested&patient_id={patient.id}") == [b]
    assert ids("state=done") == []
    assert ids("state=all&per_page=1&page=2") == [b]


@pytest.mark.parametrize("query", ["state=bogus", "patient_id=abc", "page=-1"])
def test_bad_request_list_filters_are_400(doc, query):
    assert_error(doc.get(f"/api/v1/requests?{query}"), 400, "bad_request")


# -- transitions --------------------------------------------------------------

def test_submit_then_submit_again_is_409(doc, patient):
    rid = order(doc, patient).get_json()["id"]
    r = doc.post(f"/api/v1/requests/{rid}/submit")
    assert r.status_code == 200 and r.get_json()["state"] == "requested"
    body = assert_error(doc.post(f"/api/v1/requests/{rid}/submit"), 409, "illegal_transition")
    assert body["state"] == "requested" and "is requested" in body["message"]


def test_transitions_of_an_unknown_request_are_404(doc):
    assert_error(doc.post("/api/v1/requests/999999/submit"), 404, "not_found")
    assert_error(doc.post("/api/v1/requests/999999/cancel", json={"reason": "x"}), 404, "not_found")


def test_cancel_with_a_reason(doc, patient):
    rid = order(doc, patient, submit=True).get_json()["id"]
    r = doc.post(f"/api/v1/requests/{rid}/cancel", json={"reason": "Duplicate order"})
    assert r.status_code == 200
    body = r.get_json()
    assert (body["state"], body["cancel_reason"]) == ("cancelled", "Duplicate order")
    assert body["events"][-1]["note"] == "Duplicate order"


@pytest.mark.parametrize("payload", [{}, {"reason": ""}, {"reason": "   "}, {"reason": None}])
def test_cancel_without_a_reason_is_422(doc, patient, payload):
    rid = order(doc, patient).get_json()["id"]
    body = assert_error(doc.post(f"/api/v1/requests/{rid}/cancel", json=payload), 422, "validation")
    assert "reason" in body["fields"]
    assert db.session.get(ImagingRequest, rid).state == "draft"


def test_cancel_with_a_mistyped_reason_is_422(doc, patient):
    rid = order(doc, patient).get_json()["id"]
    assert "reason" in assert_error(doc.post(f"/api/v1/requests/{rid}/cancel", json={"reason": 5}), 422)["fields"]


def test_cancel_without_a_body_is_400(doc, patient):
    rid = order(doc, patient).get_json()["id"]
    assert_error(doc.post(f"/api/v1/requests/{rid}/cancel"), 400)


def test_cancel_twice_is_409(doc, patient):
    rid = order(doc, patient).get_json()["id"]
    assert doc.post(f"/api/v1/requests/{rid}/cancel", json={"reason": "x"}).status_code == 200
    body = assert_error(doc.post(f"/api/v1/requests/{rid}/cancel", json={"reason": "y"}), 409)
    assert body["state"] == "cancelled"


@pytest.mark.parametrize("path,payload", [("submit", None), ("cancel", {"reason": "x"})])
def test_technologist_cannot_submit_or_cancel(api, doc, patient, path, payload):
    rid = order(doc, patient).get_json()["id"]
    assert_error(api("technologist").post(f"/api/v1/requests/{rid}/{path}", json=payload), 403)
    assert db.session.get(ImagingRequest, rid).state == "draft"


# -- results ------------------------------------------------------------------

def test_radiologist_posts_a_preliminary_result_the_request_stays_requested(api, doc, patient):
    rid = order(doc, patient, submit=True).get_json()["id"]
    rad = api("radiologist")
    r = rad.post(f"/api/v1/requests/{rid}/result", json={"report": "No fracture.", "date": "2024-05-02"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["state"] == "requested" and body["result_id"]
    assert body["progress"] == "preliminary"  # what pages show (imaging/progress.py)
    res = body["result"]
    assert (res["report"], res["date"], res["radiologist"], res["final"]) == \
        ("No fracture.", "2024-05-02", rad.user.username, False)
    assert body["events"][-1]["action"] == "result written"
    assert doc.get("/api/v1/requests?state=done").get_json()["total"] == 0


def test_result_can_be_final_at_once(api, doc, patient):
    rid = order(doc, patient, submit=True).get_json()["id"]
    r = api("radiologist").post(f"/api/v1/requests/{rid}/result", json={"report": "Normal.", "final": True})
    assert r.status_code == 201
    assert (r.get_json()["state"], r.get_json()["progress"]) == ("done", "final")
    assert r.get_json()["result"]["final"] is True
    assert r.get_json()["state"] == "done"  # finalising closes the request
    assert doc.get("/api/v1/requests?state=done").get_json()["total"] == 1


def test_result_on_a_draft_is_409(api, doc, patient):
    rid = order(doc, patient).get_json()["id"]
    body = assert_error(api("radiologist").post(f"/api/v1/requests/{rid}/result", json={"report": "x"}), 409)
    assert body["state"] == "draft"
    assert count(Result) == 0


def test_a_second_result_is_409(api, doc, patient):
    rid = order(doc, patient, submit=True).get_json()["id"]
    rad = api("radiologist")
    assert rad.post(f"/api/v1/requests/{rid}/result", json={"report": "one"}).status_code == 201
    assert_error(rad.post(f"/api/v1/requests/{rid}/result", json={"report": "two"}), 409)
    assert count(Result) == 1


@pytest.mark.parametrize("change,field", [
    ({"report": 5}, "report"),
    ({"date": "02/05/2024"}, "date"),
    ({"report_style": "fancy"}, "report_style"),
    ({"radiologist": "nobody-here"}, "radiologist"),
    ({"final": "yes"}, "final"),
])
def test_invalid_result_fields_are_422_and_change_nothing(api, doc, patient, change, field):
    rid = order(doc, patient, submit=True).get_json()["id"]
    body = assert_error(api("radiologist").post(f"/api/v1/requests/{rid}/result",
                                                json={"report": "Normal.", **change}), 422, "validation")
    assert field in body["fields"]
    db.session.expire_all()
    assert db.session.get(ImagingRequest, rid).state == "requested"
    assert count(Result) == 0


@pytest.mark.parametrize("role", ["physician", "technologist"])
def test_only_radiologists_post_results(api, doc, patient, role):
    rid = order(doc, patient, submit=True).get_json()["id"]
    assert_error(api(role).post(f"/api/v1/requests/{rid}/result", json={"report": "x"}), 403)
    assert count(Result) == 0


def test_result_for_unknown_request_is_404(api):
    assert_error(api("radiologist").post("/api/v1/requests/999999/result", json={"report": "x"}), 404)


# -- other errors -------------------------------------------------------------

def test_unknown_api_path_and_wrong_method_answer_json(api):
    c = api("physician")
    assert_error(c.get("/api/v1/nothing-here"), 404)
    assert_error(c.get("/api/v1/requests/1/submit"), 405)


# -- OpenAPI ------------------------------------------------------------------

@pytest.fixture
def openapi(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.is_json
    return r.get_json()


def test_openapi_document_is_valid_openapi_3_1(openapi):
    from openapi_spec_validator import validate

    assert openapi["openapi"].startswith("3.1")
    validate(openapi)  # raises on an invalid document


def _flask_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "{}", rule)


def test_openapi_documents_every_api_route(app, openapi):
    """A route added to the API without its entry in openapi.py fails here."""
    base = openapi["servers"][0]["url"]
    assert base.endswith("/api/v1")
    documented = {(re.sub(r"\{[^}]+\}", "{}", path), method.upper())
                  for path, item in openapi["paths"].items() for method in item
                  if method in {"get", "post", "put", "patch", "delete"}}
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi":
            continue  # the document need not describe itself
        path = _flask_to_openapi(rule.rule[len("/api/v1"):])
        routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed, "no /api/v1 routes found"
    assert sorted(routed - documented) == [], "routes missing from /api/v1/openapi.json"
    assert sorted(documented - routed) == [], "documented paths that do not exist"


def test_a_test_code_with_a_non_ascii_capital_twice_is_409_not_500(api, catalog):
    """SQLite's lower() folds only ASCII: the service's duplicate lookup
    missed 'CT-ÄÖ' and the unique index answered (a 500, found by the fuzz test)."""
    admin = api("admin")
    payload = {"code": "CT-ÄÖ", "name": "Head CT", "modality": "CT", "ae_title": "CT1"}
    assert admin.post("/api/v1/tests", json=payload).status_code == 201
    body = assert_error(admin.post("/api/v1/tests", json=payload), 409, "conflict")
    assert "CT-ÄÖ" in body["message"]
    assert admin.get("/api/v1/tests?all=1").status_code == 200
