"""Desk traps of the order and edit forms (issue 13): the patient box
resolves what was typed (a PUID, or a name or birth date matching one
patient; several or none are said, never guessed), and a scheduled time in
the past is kept only when confirmed (pages and API)."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from ghimaging import clock
from ghimaging.extensions import db
from ghimaging.models import ImagingRequest
from ghimaging.models._time import utcnow
from ghimaging.settings import service as settings


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Dr Alice Doe")


@pytest.fixture
def desk(doc, login):
    """A physician signed in, CSRF on."""
    return login("doc")


@pytest.fixture
def la_paz(app):
    """The clinic four hours behind UTC: "now" and "past" are the clinic's."""
    settings.save_clinic_settings({"time_zone": "America/La_Paz"})
    db.session.commit()


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def patient_errors(resp) -> list[str]:
    """The errors said at the patient box."""
    body = page(resp)
    box = re.search(r'<div class="field picker has-error">(.*?)</section>', body, re.S)
    assert box, "no error at the patient box"
    return re.findall(r'<p class="error">(.*?)</p>', box.group(1), re.S)


def requests() -> list[ImagingRequest]:
    db.session.expire_all()
    return list(db.session.scalars(select(ImagingRequest).order_by(ImagingRequest.id)))


def order(desk, typed: str, catalog, **kw):
    data = {"patient": typed, "tests": [catalog["chest"].id], "physician": 0, "action": "draft"}
    data.update(kw)
    return desk.post("/requests/new", data, token_from="/requests/new")


def local_now() -> datetime:
    return clock.to_local(utcnow())


def form_time(when: datetime) -> dict[str, str]:
    return {"scheduled_date": when.strftime("%Y-%m-%d"), "scheduled_time": when.strftime("%H:%M")}


def order_after_a_look(desk, typed: str, catalog, patient, **kw):
    """What was typed finds ``patient``: the first send orders nothing and
    comes back with their PUID in the box, their name and birth date said at
    it; the second send (the PUID now) places the order."""
    r = order(desk, typed, catalog, **kw)
    assert r.status_code == 400 and requests() == [], "ordered before anyone looked at who it is"
    said = " ".join(patient_errors(r))
    assert f"Found {patient.full_name} (PUID {patient.puid}" in said, said
    assert f'value="{patient.puid}"' in page(r)
    r = order(desk, patient.puid, catalog, **kw)
    assert r.status_code == 302, patient_errors(r)
    return r


# -- the patient box ----------------------------------------------------------

def test_a_unique_name_orders_for_that_patient(desk, catalog, create_patient):
    create_patient(family_name="Mbeki", given_name="Thandi")
    garcia = create_patient(family_name="García López", given_name="Ana")
    order_after_a_look(desk, "garcia ana", catalog, garcia)
    assert [req.patient_id for req in requests()] == [garcia.id]


def test_a_birth_date_matching_one_patient_orders_for_them(desk, catalog, create_patient):
    from datetime import date

    create_patient(family_name="Mbeki", birth_date=date(1990, 5, 1))
    born = create_patient(family_name="Okafor", birth_date=date(1975, 4, 3))
    order_after_a_look(desk, "1975-04-03", catalog, born)
    assert [req.patient_id for req in requests()] == [born.id]


def test_several_matches_are_listed_and_none_is_picked(desk, catalog, create_patient):
    create_patient(puid="H-1", family_name="García", given_name="Ana")
    create_patient(puid="H-2", family_name="Garcia", given_name="Luis")
    create_patient(puid="H-3", family_name="García Ruiz", given_name="Eva")
    create_patient(puid="H-4", family_name="Mbeki")
    r = order(desk, "García", catalog)
    assert r.status_code == 400
    [error] = patient_errors(r)
    assert error.startswith("3 patients match \u201cGarcía\u201d \u2014 pick one from the list:")
    for name in ("García, Ana (H-1", "Garcia, Luis (H-2", "García Ruiz, Eva (H-3"):
        assert name in error
    assert "Mbeki" not in error
    assert 'value="García"' in page(r)  # what was typed stays in the box
    assert requests() == []


def test_many_matches_name_the_first_few(desk, catalog, create_patient):
    for n in range(8):
        create_patient(family_name="Silva", given_name=f"Given{n}")
    [error] = patient_errors(order(desk, "silva", catalog))
    assert error.startswith("8 patients match \u201csilva\u201d")
    assert error.count("Silva, ") == 5 and error.endswith("\u2026.")
    assert requests() == []


def test_no_match_names_what_was_typed(desk, catalog, create_patient):
    create_patient(family_name="Mbeki")
    r = order(desk, "Zzyzx", catalog)
    assert r.status_code == 400
    assert patient_errors(r) == ["No patient matches \u201cZzyzx\u201d. Check the spelling, or register the "
                                 "patient first."]
    assert requests() == []


def test_an_exact_puid_wins_over_names_and_longer_puids(desk, catalog, create_patient):
    short = create_patient(puid="P-1", family_name="Uno")
    create_patient(puid="P-10", family_name="Diez")
    create_patient(puid="P-11", family_name="P-1 Once")  # "P-1" is also part of this name
    r = order(desk, "P-1", catalog)
    assert r.status_code == 302, patient_errors(r)
    assert [req.patient_id for req in requests()] == [short.id]


def test_the_api_still_takes_the_patient_id_only(api, catalog, create_patient):
    """The API names a patient by its id (``patient_id``), never by a text
    to resolve: a program must not get a guess."""
    p = create_patient(family_name="Okafor")
    client = api("physician")
    r = client.post("/api/v1/requests", json={"patient_id": "Okafor", "test_code": "XR-CHEST"})
    assert r.status_code == 422
    assert "patient_id" in r.get_json()["fields"]
    assert client.post("/api/v1/requests", json={"patient_id": p.id, "test_code": "XR-CHEST"}).status_code == 201


# -- scheduled in the past: the order form -------------------------------------

def test_the_order_form_asks_before_scheduling_in_the_past(desk, catalog, create_patient, la_paz):
    p = create_patient()
    yesterday = (local_now() - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    r = order(desk, p.puid, catalog, **form_time(yesterday))
    assert r.status_code == 400
    body = page(r)
    assert "This time is in the past. Tick \u201cYes, schedule in the past\u201d if that is what you mean." in body
    assert re.search(r'<input[^>]*name="confirm_past"[^>]*type="checkbox"|<input[^>]*type="checkbox"[^>]*'
                     r'name="confirm_past"', body)
    assert "Yes, schedule in the past" in body
    assert requests() == []

    r = order(desk, p.puid, catalog, confirm_past="y", **form_time(yesterday))
    assert r.status_code == 302
    [req] = requests()
    assert clock.to_local(req.scheduled_at) == yesterday


def test_the_order_form_shows_no_confirmation_box_for_a_future_time(desk, catalog, create_patient, la_paz):
    r = desk.get("/requests/new")
    assert 'name="confirm_past"' not in page(r)
    p = create_patient()
    tomorrow = (local_now() + timedelta(days=1)).replace(second=0, microsecond=0)
    assert order(desk, p.puid, catalog, **form_time(tomorrow)).status_code == 302


def test_a_walk_in_booked_minutes_ago_is_not_asked(desk, catalog, create_patient, la_paz):
    p = create_patient()
    just_now = (local_now() - timedelta(minutes=10)).replace(second=0, microsecond=0)
    r = order(desk, p.puid, catalog, **form_time(just_now))
    assert r.status_code == 302, page(r)[-3000:]
    [req] = requests()
    assert clock.to_local(req.scheduled_at) == just_now


def test_past_is_judged_in_the_clinics_zone(desk, catalog, create_patient, la_paz):
    """Two hours ahead on the UTC clock is still two hours behind in La Paz
    (UTC-4): the clinic's wall clock is what was typed."""
    p = create_patient()
    typed = (utcnow() - timedelta(hours=2)).replace(second=0, microsecond=0)  # UTC wall time, 2 h ago there
    r = order(desk, p.puid, catalog, **form_time(typed))  # read as La Paz time: 2 h ahead of UTC's now
    assert r.status_code == 302, page(r)[-3000:]


# -- scheduled in the past: the edit form -------------------------------------

def test_the_edit_form_asks_before_moving_a_request_into_the_past(desk, create_request, la_paz):
    req = create_request()
    last_week = (local_now() - timedelta(days=7)).replace(hour=10, minute=30, second=0, microsecond=0)
    url = f"/requests/{req.id}/edit"
    r = desk.post(url, {"physician": 0, "comment": "", **form_time(last_week)}, token_from=url)
    assert r.status_code == 400
    assert "Yes, schedule in the past" in page(r)
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).scheduled_at is None

    r = desk.post(url, {"physician": 0, "comment": "", "confirm_past": "y", **form_time(last_week)}, token_from=url)
    assert r.status_code == 302
    db.session.expire_all()
    assert clock.to_local(db.session.get(ImagingRequest, req.id).scheduled_at) == last_week


def test_an_edit_that_keeps_a_past_time_is_not_asked_again(desk, create_request, la_paz):
    """Yesterday's request gets a comment: its time was confirmed when set."""
    yesterday = (local_now() - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    req = create_request(scheduled_at=clock.to_utc(yesterday))
    url = f"/requests/{req.id}/edit"
    r = desk.post(url, {"physician": 0, "comment": "bring old films", **form_time(yesterday)}, token_from=url)
    assert r.status_code == 302, page(r)[-3000:]
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).comment == "bring old films"


# -- scheduled in the past: the API -------------------------------------------

def test_the_api_refuses_a_past_time_unless_confirmed(api, catalog, create_patient, la_paz):
    client = api("physician")
    p = create_patient()
    when = (local_now() - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    r = client.post("/api/v1/requests", json={"patient_id": p.id, "test_code": "XR-CHEST", "scheduled_at": when})
    assert r.status_code == 422
    assert list(r.get_json()["fields"]) == ["scheduled_at"]
    assert "confirm_past" in r.get_json()["fields"]["scheduled_at"]
    r = client.post("/api/v1/requests", json={"patient_id": p.id, "test_code": "XR-CHEST", "scheduled_at": when,
                                              "confirm_past": "yes"})
    assert r.status_code == 422 and "confirm_past" in r.get_json()["fields"]
    assert db.session.scalar(select(func.count()).select_from(ImagingRequest)) == 0
    r = client.post("/api/v1/requests", json={"patient_id": p.id, "test_code": "XR-CHEST", "scheduled_at": when,
                                              "confirm_past": True})
    assert r.status_code == 201
    assert clock.to_local(requests()[0].scheduled_at).strftime("%Y-%m-%dT%H:%M") == when


def test_the_api_takes_a_time_minutes_ago_without_confirmation(api, catalog, create_patient, la_paz):
    client = api("physician")
    when = (local_now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    r = client.post("/api/v1/requests", json={"patient_id": create_patient().id, "test_code": "XR-CHEST",
                                              "scheduled_at": when})
    assert r.status_code == 201, r.get_json()
