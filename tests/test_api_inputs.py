"""Bad input never gives a 500: JSON nested too deeply or too large for the
API, and dates no clinic means (year 1, year 9999), on the API and on the
pages (issue 9, findings 6 and 7)."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, Patient, Result

PATIENT = {"puid": "IN-0001", "family_name": "Okafor", "given_name": "Ada", "birth_date": "1980-02-03", "sex": "F"}


@pytest.fixture
def make_user(app):
    """API users never type a password; the pages' users use a cheap hash."""
    from werkzeug.security import generate_password_hash

    from ghimaging.models import Role, User
    from tests.support.factories import PASSWORD

    def make(username: str, *roles: str, **_):
        user = User(username=username, full_name=username.title(),
                    password_hash=generate_password_hash(PASSWORD, "pbkdf2:sha256:1000"))
        user.set_roles([Role(r) for r in roles])
        db.session.add(user)
        db.session.commit()
        return user

    return make


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def assert_error(r, status: int, error: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.is_json, r.get_data(as_text=True)[:200]
    body = r.get_json()
    assert isinstance(body["message"], str) and body["message"]
    if error:
        assert body["error"] == error
    return body


def nested(levels: int, leaf: str = "1") -> str:
    """A JSON array ``levels`` deep."""
    return "[" * levels + leaf + "]" * levels


@pytest.fixture
def staff(api, catalog):
    return api("admin", "physician", "technologist", "radiologist")


# -- JSON depth and size ----------------------------------------------------------

@pytest.mark.parametrize("levels", [900, 5000, 200_000])
def test_json_nested_hundreds_of_levels_is_400_not_a_recursion_error(staff, levels):
    raw = '{"puid": "IN-1", "family_name": "X", "sex": "F", "notes": ' + nested(levels) + "}"
    r = staff.client.post("/api/v1/patients", data=raw, content_type="application/json", headers=staff.headers)
    body = assert_error(r, 400, "bad_request")
    assert "nested too deeply" in body["message"] and "32" in body["message"]
    assert count(Patient) == 0


@pytest.mark.parametrize("path", ["/api/v1/requests", "/api/v1/tests", "/api/v1/orthanc/servers",
                                  "/api/v1/requests/{rid}/cancel", "/api/v1/requests/{rid}/result",
                                  "/api/v1/studies/1/link"])
def test_every_json_endpoint_refuses_deep_nesting_with_400(staff, create_request, path):
    rid = create_request(submit=True).id
    raw = '{"reason": "x", "request_id": ' + nested(1000) + "}"
    r = staff.client.post(path.format(rid=rid), data=raw, content_type="application/json", headers=staff.headers)
    if path.endswith("/link"):  # no study 1: the 404 comes before the body is read
        assert_error(r, 404)
    else:
        assert "nested too deeply" in assert_error(r, 400, "bad_request")["message"]
    db.session.expire_all()
    assert db.session.get(ImagingRequest, rid).state == "requested" and count(Result) == 0


def test_deep_nesting_in_a_patch_body_is_400(staff):
    from ghimaging.models import OrthancServer

    db.session.add(OrthancServer(label="Spare", url="http://127.0.0.1:9"))
    db.session.commit()
    sid = db.session.scalar(select(OrthancServer.id))
    r = staff.client.patch(f"/api/v1/orthanc/servers/{sid}", data='{"label": ' + nested(2000) + "}",
                           content_type="application/json", headers=staff.headers)
    assert "nested too deeply" in assert_error(r, 400, "bad_request")["message"]


def test_thirty_two_levels_are_read_and_thirty_three_refused(staff):
    """Depth counts the objects and arrays from the body itself (level 1)."""
    def post(levels):
        # the body object is level 1, notes' arrays the rest
        raw = '{"puid": "IN-2", "family_name": "X", "sex": "F", "notes": ' + nested(levels - 1) + "}"
        return staff.client.post("/api/v1/patients", data=raw, content_type="application/json",
                                 headers=staff.headers)

    assert assert_error(post(32), 422, "validation")["fields"] == {"notes": "Must be a string."}
    assert "nested too deeply" in assert_error(post(33), 400, "bad_request")["message"]


def test_a_deep_object_nest_is_refused_as_well(staff):
    raw = '{"notes": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"
    r = staff.client.post("/api/v1/patients", data=raw, content_type="application/json", headers=staff.headers)
    assert "nested too deeply" in assert_error(r, 400)["message"]


def test_the_depth_limit_is_a_setting(app, staff):
    app.config["API_MAX_JSON_DEPTH"] = 3
    raw = json.dumps({**PATIENT, "notes": [[["deep"]]]})
    r = staff.client.post("/api/v1/patients", data=raw, content_type="application/json", headers=staff.headers)
    assert "at most 3 levels" in assert_error(r, 400)["message"]


def test_brackets_inside_strings_do_not_count_as_depth(staff):
    r = staff.post("/api/v1/patients", json={**PATIENT, "notes": "[" * 2000 + "{" * 2000})
    assert r.status_code == 201, r.get_json()


def test_a_body_over_the_size_limit_is_413_and_stores_nothing(app, staff):
    app.config["API_MAX_JSON_BYTES"] = 2000
    r = staff.post("/api/v1/patients", json={**PATIENT, "notes": "x" * 3000})
    body = assert_error(r, 413, "too_large")
    assert "2,000 bytes" in body["message"]
    assert count(Patient) == 0
    assert staff.post("/api/v1/patients", json={**PATIENT, "notes": "x" * 1000}).status_code == 201


def test_a_streamed_body_without_length_is_bounded_too(app, staff):
    """Chunked transfer announces no Content-Length (gunicorn then marks the
    input as terminated): the limit holds while reading."""
    app.config["API_MAX_JSON_BYTES"] = 2000
    raw = json.dumps({**PATIENT, "notes": "x" * 50_000}).encode()
    r = staff.client.post("/api/v1/patients", input_stream=io.BytesIO(raw),
                          environ_overrides={"wsgi.input_terminated": True}, headers={
                              **staff.headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert_error(r, 413, "too_large")
    assert count(Patient) == 0


def test_the_default_size_takes_the_longest_report(api, staff, create_request):
    """100,000 characters outside ASCII, each sent as a six-byte \\u escape
    (600 KB), are within the default 1 MiB."""
    rid = create_request(submit=True).id
    raw = json.dumps({"report": "漢" * 100_000, "final": True}, ensure_ascii=True)
    assert len(raw) > 600_000
    r = staff.client.post(f"/api/v1/requests/{rid}/result", data=raw, content_type="application/json",
                          headers=staff.headers)
    assert r.status_code == 201, r.get_data(as_text=True)[:300]
    assert len(r.get_json()["result"]["report"]) == 100_000


@pytest.mark.parametrize("raw", ['{"puid": "\\ud800"}', b'{"puid": "\xff\xfe"}', '{"a": 1e999999, "puid": 5}',
                                 '{"puid": ' + "9" * 5000 + "}", '{"puid": NaN}'])
def test_odd_json_is_4xx(staff, raw):
    r = staff.client.post("/api/v1/patients", data=raw, content_type="application/json", headers=staff.headers)
    assert r.status_code in (400, 422), r.get_data(as_text=True)[:300]
    assert count(Patient) == 0


def test_nul_inside_a_nested_value_or_key_is_still_refused(staff):
    for payload in ({**PATIENT, "notes": "a\x00b"}, {**PATIENT, "extra": [{"k\x00": 1}]}):
        assert "NUL" in assert_error(staff.post("/api/v1/patients", json=payload), 400)["message"]
    assert count(Patient) == 0


# -- dates no clinic means ---------------------------------------------------------

def order(client, patient, **kw):
    return client.post("/api/v1/requests", json={"patient_id": patient.id, "test_code": "XR-CHEST", **kw})


@pytest.mark.parametrize("when", ["0001-01-01T00:00+14:00", "0001-01-01T00:00", "9999-12-31T23:59-14:00",
                                  "9999-12-31T23:59", "1899-12-31T12:00", "2200-01-01T00:00"])
def test_a_scheduled_time_outside_1900_2199_is_422_naming_the_field(staff, create_patient, when):
    body = assert_error(order(staff, create_patient(), scheduled_at=when), 422, "validation")
    assert body["fields"] == {"scheduled_at": "The scheduled time must be between 1900 and 2199."}
    assert count(ImagingRequest) == 0


def test_a_scheduled_time_with_an_offset_is_clinic_time(staff, create_patient):
    from datetime import datetime

    r = order(staff, create_patient(), scheduled_at="2030-01-02T08:00+00:00")
    assert r.status_code == 201, r.get_json()
    # The clinic's zone is UTC by default: the same instant, said with its offset.
    assert r.get_json()["scheduled_at"] == "2030-01-02T08:00+00:00"
    assert datetime.fromisoformat(r.get_json()["scheduled_at"]) == datetime.fromisoformat("2030-01-02T08:00+00:00")


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1899-12-31"])
def test_a_result_date_outside_1900_2199_is_422(staff, create_request, day):
    rid = create_request(submit=True).id
    body = assert_error(staff.post(f"/api/v1/requests/{rid}/result", json={"report": "ok", "date": day}),
                        422, "validation")
    assert "date" in body["fields"] and "between 1900 and 2199" in body["fields"]["date"]
    assert count(Result) == 0


def test_the_workflow_refuses_such_dates_from_any_caller(app, staff, create_patient, create_request, catalog):
    from datetime import date, datetime

    from ghimaging.imaging import workflow

    with pytest.raises(workflow.ValidationError) as exc:
        workflow.create_order(create_patient(), [catalog["chest"]], user=staff.user,
                              scheduled_at=datetime(1, 1, 1))
    assert set(exc.value.errors) == {"scheduled_at"}
    req = create_request(submit=True)
    with pytest.raises(workflow.ValidationError) as exc:
        workflow.update_request(req, user=staff.user, physician=None, urgent=False, clinical_context="",
                                comment="", scheduled_at=datetime(9999, 12, 31))
    assert set(exc.value.errors) == {"scheduled_at"}
    with pytest.raises(workflow.ValidationError) as exc:
        workflow.create_result(req, staff.user, radiologist=None, result_date=date(1, 1, 1), report="ok")
    assert set(exc.value.errors) == {"result_date"}


# -- the same dates on the pages ----------------------------------------------------

def page_errors(resp) -> list[str]:
    return re.findall(r'<p class="error">([^<]*)</p>', html.unescape(resp.get_data(as_text=True)))


@pytest.fixture
def doc_page(make_user, login):
    make_user("doc", "physician", "radiologist")
    return login("doc")


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_the_order_form_says_the_scheduled_date_is_out_of_range(doc_page, catalog, create_patient, day):
    p = create_patient()
    r = doc_page.post("/requests/new", {"patient": p.puid, "tests": [catalog["chest"].id], "physician": 0,
                                        "scheduled_date": day, "scheduled_time": "10:00", "action": "submit"},
                      token_from="/requests/new")
    assert r.status_code == 400
    assert "The scheduled date must be between 1900 and 2199." in page_errors(r)
    assert count(ImagingRequest) == 0


def test_the_edit_form_says_the_scheduled_date_is_out_of_range(doc_page, create_request):
    req = create_request()
    r = doc_page.post(f"/requests/{req.id}/edit", {"physician": 0, "scheduled_date": "0001-01-01",
                                                   "scheduled_time": "00:00", "comment": "moved"},
                      token_from=f"/requests/{req.id}/edit")
    assert r.status_code == 400
    assert "The scheduled date must be between 1900 and 2199." in page_errors(r)
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).scheduled_at is None


def test_the_result_form_says_the_date_is_out_of_range(doc_page, create_request):
    req = create_request(submit=True)
    r = doc_page.post(f"/requests/{req.id}/result", {"radiologist": "0", "result_date": "0001-01-01",
                                                     "report_style": "with_images", "report": "Normal."},
                      token_from=f"/requests/{req.id}/result")
    assert r.status_code == 400
    assert "The date of the result must be between 1900 and 2199." in page_errors(r)
    assert count(Result) == 0
