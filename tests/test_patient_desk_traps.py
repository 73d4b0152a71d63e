"""The desk's patient traps (issue 13 §5): finding a patient by a name, a
PUID or a birth date; the probable-duplicate warning before a new patient
is saved (form and API); the optional PUID allocation for clinics without
an external register. Each test here failed on the code before the change."""

from __future__ import annotations

import html
import re
from datetime import date
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import Patient
from ghimaging.settings import service as settings
from tests.support.web import CsrfClient


@pytest.fixture
def tech(make_user, login) -> CsrfClient:
    make_user("tech", "technologist")
    return login("tech")


def set_clinic(**values: str) -> None:
    settings.save_clinic_settings(values)
    db.session.commit()


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def listed(resp) -> list[str]:
    """PUIDs the patient list shows, sorted."""
    assert resp.status_code == 200
    return sorted(html.unescape(p) for p in re.findall(
        r'<td><a href="/patients/\d+"><code>([^<]*)</code></a></td>', resp.get_data(as_text=True)))


def patient_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Patient))


# -- search by name, PUID or birth date ---------------------------------------

@pytest.fixture
def born(create_patient):
    """Three patients, two born on the same day."""
    return {
        "P-1": create_patient(puid="P-1", family_name="Müller", given_name="Jürgen", birth_date=date(1975, 4, 3)),
        "P-2": create_patient(puid="P-2", family_name="Quispe", given_name="Rosa", birth_date=date(1975, 4, 3)),
        "P-3": create_patient(puid="P-3", family_name="Mamani", given_name="Luis", birth_date=date(1982, 11, 30)),
    }


def test_the_list_and_the_lookup_find_patients_by_an_iso_birth_date(tech, born):
    assert listed(tech.get("/patients/?q=1975-04-03")) == ["P-1", "P-2"]
    assert sorted(p["puid"] for p in tech.get("/patients/lookup?q=1975-04-03").json) == ["P-1", "P-2"]
    assert listed(tech.get("/patients/?q=1982-11-30")) == ["P-3"]
    assert listed(tech.get("/patients/?q=1990-01-01")) == []


def test_a_birth_date_in_the_clinics_format_and_a_name_narrow_the_search(tech, born):
    set_clinic(date_format="dd.mm.yyyy")
    assert listed(tech.get("/patients/?q=03.04.1975")) == ["P-1", "P-2"]
    assert listed(tech.get("/patients/?q=" + quote("muller 03.04.1975"))) == ["P-1"]
    assert listed(tech.get("/patients/?q=" + quote("Quispe, 1975-04-03"))) == ["P-2"]
    assert [p["puid"] for p in tech.get("/patients/lookup?q=30.11.1982").json] == ["P-3"]


def test_a_date_in_another_format_than_the_clinics_is_not_a_birth_date(tech, born):
    """01/03 is March or January depending on the clinic: only its own format is read."""
    set_clinic(date_format="mm/dd/yyyy")
    assert listed(tech.get("/patients/?q=" + quote("04/03/1975"))) == ["P-1", "P-2"]
    assert listed(tech.get("/patients/?q=" + quote("03/04/1975"))) == []
    assert listed(tech.get("/patients/?q=03.04.1975")) == []


def test_search_by_name_and_puid_still_works_beside_dates(tech, born):
    assert listed(tech.get("/patients/?q=P-2")) == ["P-2"]
    assert listed(tech.get("/patients/?q=mamani")) == ["P-3"]
    assert listed(tech.get("/patients/?q=1975-13-45")) == []  # not a date: a word, found nowhere
