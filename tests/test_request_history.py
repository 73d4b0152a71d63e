"""A request's history says what an edit changed (issue 13): each changed
field as "Field: old → new", kept as data (request_events.changes) and put
into words when read, in the reader's language and the clinic's zone; a
save that changes nothing leaves no "edit" entry."""

from __future__ import annotations

import html
import re
from datetime import datetime

import flask_babel
import pytest
from flask import render_template
from sqlalchemy import select

from ghimaging import clock
from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, RequestEvent
from ghimaging.settings import service as settings

LONG = "Persistent cough for three weeks after a chest infection, night sweats, weight loss of 4 kg " * 3


@pytest.fixture
def doctors(make_user):
    return (make_user("doc", "physician", full_name="Dr Alice Doe"),
            make_user("bob", "physician", full_name="Dr Bob Roe"))


@pytest.fixture
def desk(doctors, login):
    return login("doc")


@pytest.fixture
def la_paz(app):
    settings.save_clinic_settings({"time_zone": "America/La_Paz"})
    db.session.commit()


def edits(req: ImagingRequest) -> list[RequestEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(RequestEvent).where(RequestEvent.request_id == req.id,
                                                              RequestEvent.action == "edit")))


def history(app, req: ImagingRequest, language: str = "en") -> str:
    """The history partial as the request page includes it, read in ``language``."""
    with app.test_request_context("/", headers={"Accept-Language": language}):
        flask_babel.refresh()  # the test's app context keeps the language of the one before
        body = render_template("imaging/_history.html", req=db.session.get(ImagingRequest, req.id))
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def edit(desk, req, **fields):
    data = {"physician": 0, "comment": "", "clinical_context": ""}
    data.update(fields)
    url = f"/requests/{req.id}/edit"
    return desk.post(url, data, token_from=url)


@pytest.fixture
def booked(create_request, doctors, la_paz):
    """Routine, Dr Doe's, at 09:00 on 10 January 2030 in La Paz (13:00 UTC)."""
    return create_request(physician=doctors[0], scheduled_at=datetime(2030, 1, 10, 13, 0), comment="Fasting")


def test_an_edit_lists_each_changed_field(app, desk, booked, doctors):
    r = edit(desk, booked, physician=doctors[1].id, urgent="y", scheduled_date="2030-01-11", scheduled_time="14:30",
             comment="Fasting", clinical_context=LONG)
    assert r.status_code == 302
    [event] = edits(booked)
    assert [c["field"] for c in event.changes] == ["scheduled_at", "requesting_physician", "urgent",
                                                   "clinical_context"]  # the comment did not change
    text = history(app, booked)
    assert "Scheduled: 2030-01-10 09:00 → 2030-01-11 14:30" in text  # the clinic's zone, not UTC
    assert "Requesting physician: Dr Alice Doe → Dr Bob Roe" in text
    assert "Priority: Routine → Urgent" in text
    shown = re.search(r"Clinical context: \(none\) → (\S.*?…)", text)
    assert shown and LONG.startswith(shown.group(1)[:-1].strip()) and len(shown.group(1)) <= 80
    assert "Comment:" not in text
    # The API's note says the same in one line.
    assert event.note == ("Scheduled: 2030-01-10 09:00 -> 2030-01-11 14:30; Requesting physician: Dr Alice Doe -> "
                          f"Dr Bob Roe; Priority: routine -> urgent; Clinical context: (none) -> {shown.group(1)}")


def test_a_change_past_the_shortened_text_is_still_recorded(app, desk, booked):
    edit(desk, booked, physician=booked.requesting_physician_id, scheduled_date="2030-01-10", scheduled_time="09:00",
         comment="Fasting", clinical_context=LONG)
    edit(desk, booked, physician=booked.requesting_physician_id, scheduled_date="2030-01-10", scheduled_time="09:00",
         comment="Fasting", clinical_context=LONG + " Smoker.")
    assert [[c["field"] for c in e.changes] for e in edits(booked)] == [["clinical_context"], ["clinical_context"]]


def test_a_save_that_changes_nothing_leaves_no_edit_entry(app, desk, booked):
    before = len(booked.events)
    r = edit(desk, booked, physician=booked.requesting_physician_id, scheduled_date="2030-01-10",
             scheduled_time="09:00", comment="Fasting")
    assert r.status_code == 302
    assert edits(booked) == []
    db.session.expire_all()
    assert len(db.session.get(ImagingRequest, booked.id).events) == before
    assert " Edit " not in history(app, booked)


def test_clearing_a_time_and_a_physician_says_so(app, desk, booked):
    edit(desk, booked, physician=0, comment="")
    text = history(app, booked)
    assert "Scheduled: 2030-01-10 09:00 → not scheduled" in text
    assert "Requesting physician: Dr Alice Doe → (none)" in text
    assert "Comment: Fasting → (none)" in text


def test_the_history_is_read_in_the_readers_language(app, desk, booked):
    """Kept as data, not as sentences: a German reader gets German labels
    (the catalogue's "Klinische Angaben") for an edit made in English."""
    edit(desk, booked, physician=booked.requesting_physician_id, scheduled_date="2030-01-10",
         scheduled_time="09:00", comment="Fasting", clinical_context="Cough")
    [event] = edits(booked)
    assert event.changes == [{"field": "clinical_context", "old": "", "new": "Cough"}]
    assert "Klinische Angaben: (none) → Cough" in history(app, booked, "de").replace("(keine)", "(none)")
    assert "Clinical context: (none) → Cough" in history(app, booked, "en")


def test_the_stored_time_is_utc_and_shown_in_the_zone_of_the_reading(app, desk, booked):
    edit(desk, booked, physician=booked.requesting_physician_id, scheduled_date="2030-01-10",
         scheduled_time="11:00", comment="Fasting")
    [event] = edits(booked)
    assert event.changes == [{"field": "scheduled_at", "old": "2030-01-10T13:00", "new": "2030-01-10T15:00"}]
    settings.save_clinic_settings({"time_zone": "Europe/Berlin"})
    db.session.commit()
    clock.forget()
    assert "Scheduled: 2030-01-10 14:00 → 2030-01-10 16:00" in history(app, booked)
