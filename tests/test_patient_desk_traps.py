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


# -- optional PUID allocation ---------------------------------------------------

def register(c: CsrfClient, path: str = "/patients/new", **kw):
    data = {"family_name": "Quispe", "given_name": "Rosa", "birth_date": "1990-05-06", "sex": "F"}
    data.update(kw)
    return c.post(path, {k: v for k, v in data.items() if v is not None}, token_from="/patients/new")


def test_without_allocation_the_puid_is_required_as_before(tech):
    r = register(tech)
    assert r.status_code == 400 and "PUID is required." in page(r)
    assert patient_count() == 0


def test_the_clinic_allocates_puids_from_its_pattern_when_turned_on(tech, make_user, login):
    make_user("boss", "admin")
    admin = login("boss")
    r = admin.post("/admin/settings/", {**settings.clinic_settings(), "puid_auto": "y", "puid_pattern": "GH-####"},
                   token_from="/admin/settings/")
    assert r.status_code == 302, page(r)[:2000]
    form = page(tech.get("/patients/new"))
    assert "Assigned on save" in form and 'name="puid"' not in form
    r = register(tech)
    assert r.status_code == 302
    r = register(tech, family_name="Mamani", given_name="Luis", puid="TYPED-BY-HAND")  # not offered: ignored
    assert r.status_code == 302
    assert sorted(db.session.scalars(select(Patient.puid))) == ["GH-0001", "GH-0002"]


def test_a_pattern_without_a_number_is_refused_at_its_field(make_user, login):
    make_user("boss", "admin")
    admin = login("boss")
    for bad in ("GH-", "GH-##-##", "P ###", "P\\###"):
        r = admin.post("/admin/settings/", {**settings.clinic_settings(), "puid_auto": "y", "puid_pattern": bad},
                       token_from="/admin/settings/")
        assert r.status_code == 400, bad
    assert settings.puid_pattern() is None


def test_allocation_skips_a_puid_already_typed_by_hand(app, create_patient):
    create_patient(puid="P-000001")
    set_clinic(puid_auto="1", puid_pattern="P-######")
    from ghimaging.patients import service

    made = service.create_patient({"family_name": "Nuevo", "sex": "M"})
    db.session.commit()
    assert made.puid == "P-000002"


def test_the_api_allocates_too_and_keeps_a_given_puid(api):
    set_clinic(puid_auto="1", puid_pattern="API####")
    c = api("technologist")
    r = c.post("/api/v1/patients", json={"family_name": "Condori", "sex": "F"})
    assert r.status_code == 201, r.json
    assert r.json["puid"] == "API0001"
    r = c.post("/api/v1/patients", json={"family_name": "Choque", "sex": "F", "puid": "EXT-77"})
    assert r.status_code == 201 and r.json["puid"] == "EXT-77"


def test_the_api_still_requires_a_puid_without_allocation(api):
    r = api("technologist").post("/api/v1/patients", json={"family_name": "Condori", "sex": "F"})
    assert r.status_code == 422 and "puid" in r.json["fields"]


def test_patients_registered_at_the_same_moment_get_different_puids(app):
    """Several workers register at once (threads with their own sessions,
    as gunicorn's workers would): every PUID is different, none lost."""
    import threading

    from ghimaging.patients import service

    set_clinic(puid_auto="1", puid_pattern="R-####")
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def register_one(n: int) -> None:
        try:
            with app.app_context():
                start.wait()
                service.create_patient({"family_name": f"Parallel{n}", "sex": "O"})
                db.session.commit()
        except BaseException as exc:
            errors.append(exc)
        finally:
            with app.app_context():
                db.session.remove()

    threads = [threading.Thread(target=register_one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    db.session.rollback()
    assert sorted(db.session.scalars(select(Patient.puid))) == ["R-0001", "R-0002", "R-0003", "R-0004"]


# -- probable duplicates ----------------------------------------------------------

@pytest.fixture
def mueller(create_patient):
    return create_patient(puid="M-1", family_name="Müller", given_name="José Jürgen", birth_date=date(1975, 4, 3))


def candidate_puids(body: str) -> list[str]:
    return re.findall(r'<li class="candidate" data-puid="([^"]*)"', body)


@pytest.mark.parametrize(("family", "given"), [
    ("Muller", "Jose"), ("MÜLLER", "josé"), ("Mueller", "Jose"), ("Jose", "Muller"), ("Müler", "José"),
])
def test_a_similar_name_born_the_same_day_is_shown_before_saving(tech, mueller, family, given):
    r = register(tech, puid="M-2", family_name=family, given_name=given, birth_date="1975-04-03", sex="M")
    assert r.status_code == 409
    body = page(r)
    assert candidate_puids(body) == ["M-1"]
    assert "Müller, José Jürgen" in body and f'href="/patients/{mueller.id}"' in body
    assert "This is a different person" in body
    assert patient_count() == 1


def test_a_different_birth_date_or_name_never_warns(tech, mueller):
    assert register(tech, puid="M-2", family_name="Muller", given_name="Jose", birth_date="1975-04-04").status_code == 302
    assert register(tech, puid="M-3", family_name="Muller", given_name="Ana", birth_date="1975-04-03").status_code == 302
    assert register(tech, puid="M-4", family_name="Schmidt", given_name="José", birth_date="1975-04-03").status_code == 302
    assert register(tech, puid="M-5", family_name="Muller", given_name="Jose", birth_date=None).status_code == 302
    assert patient_count() == 5


def confirmed_for(body: str) -> str:
    """The hidden "what was confirmed" the warning carries."""
    return re.search(r'<input id="confirmed_for" name="confirmed_for" type="hidden" value="([^"]*)"', body).group(1)


def checkbox_ticked(body: str) -> bool:
    return bool(re.search(r'<input checked id="confirm_new"', body))


def test_the_person_confirms_a_different_person_and_it_is_saved(tech, mueller):
    r = register(tech, puid="M-2", family_name="Muller", given_name="Jose", birth_date="1975-04-03", sex="M")
    assert r.status_code == 409 and not checkbox_ticked(page(r))
    r = register(tech, puid="M-2", family_name="Muller", given_name="Jose", birth_date="1975-04-03", sex="M",
                 confirm_new="y", confirmed_for=confirmed_for(page(r)))
    assert r.status_code == 302
    assert patient_count() == 2


def test_a_confirmation_counts_only_for_the_name_and_birth_date_it_was_given_for(tech, mueller, create_patient):
    """Ticked for "Muller, Jose", then the name and birth date corrected to
    ones like another registered patient: warned again, with that patient,
    and the box is unticked until the person confirms again."""
    quispe = create_patient(puid="Q-1", family_name="Quispe", given_name="Rosa", birth_date=date(1990, 5, 6))
    r = register(tech, puid="M-2", family_name="Muller", given_name="Jose", birth_date="1975-04-03", sex="M")
    assert r.status_code == 409 and candidate_puids(page(r)) == ["M-1"]
    first = confirmed_for(page(r))
    r = register(tech, puid="M-2", family_name="Quispe", given_name="Rosa", birth_date="1990-05-06", sex="F",
                 confirm_new="y", confirmed_for=first)
    assert r.status_code == 409
    body = page(r)
    assert candidate_puids(body) == ["Q-1"] and f'href="/patients/{quispe.id}"' in body
    assert not checkbox_ticked(body) and confirmed_for(body) != first
    assert patient_count() == 2
    r = register(tech, puid="M-2", family_name="Quispe", given_name="Rosa", birth_date="1990-05-06", sex="F",
                 confirm_new="y")  # no warning seen for these: nothing confirmed
    assert r.status_code == 409 and patient_count() == 2
    r = register(tech, puid="M-2", family_name="QUISPE", given_name="Rosa", birth_date="1990-05-06", sex="F",
                 confirm_new="y", confirmed_for=confirmed_for(body))  # letter case is the same name
    assert r.status_code == 302 and patient_count() == 3


def test_a_confirmed_tick_survives_an_unrelated_error(tech, mueller, create_patient):
    create_patient(puid="TAKEN-1", family_name="Other")
    r = register(tech, puid="TAKEN-1", family_name="Muller", given_name="Jose", birth_date="1975-04-03")
    assert r.status_code == 400  # the PUID is checked first: no warning yet
    r = register(tech, puid="M-2", family_name="Muller", given_name="Jose", birth_date="1975-04-03")
    token = confirmed_for(page(r))
    r = register(tech, puid="TAKEN-1", family_name="Muller", given_name="Jose", birth_date="1975-04-03",
                 confirm_new="y", confirmed_for=token)
    assert r.status_code == 400
    body = page(r)
    assert checkbox_ticked(body) and confirmed_for(body) == token
    r = register(tech, puid="M-2", family_name="Muller", given_name="Jose", birth_date="1975-04-03",
                 confirm_new="y", confirmed_for=token)
    assert r.status_code == 302


def test_use_existing_goes_back_to_the_order_for_that_patient(tech, mueller):
    r = register(tech, "/patients/new?then=order", puid="M-2", family_name="Muller", given_name="Jose",
                 birth_date="1975-04-03")
    assert r.status_code == 409
    use = re.search(r'<a class="button small primary use-existing" href="([^"]+)"', page(r)).group(1)
    assert use == f"/requests/new?patient_id={mueller.id}"
    r = register(tech, "/patients/new", puid="M-2", family_name="Muller", given_name="Jose", birth_date="1975-04-03")
    use = re.search(r'<a class="button small primary use-existing" href="([^"]+)"', page(r)).group(1)
    assert use == f"/patients/{mueller.id}"


def test_the_api_answers_409_with_the_candidates_unless_confirmed(api, mueller):
    c = api("technologist")
    body = {"puid": "M-2", "family_name": "Muller", "given_name": "Jose", "birth_date": "1975-04-03", "sex": "M"}
    r = c.post("/api/v1/patients", json=body)
    assert r.status_code == 409 and r.json["error"] == "probable_duplicate"
    assert [p["puid"] for p in r.json["candidates"]] == ["M-1"]
    assert r.json["candidates"][0]["birth_date"] == "1975-04-03"
    assert patient_count() == 1
    assert c.post("/api/v1/patients", json={**body, "confirm_new": "yes"}).status_code == 422
    r = c.post("/api/v1/patients", json={**body, "confirm_new": True})
    assert r.status_code == 201 and patient_count() == 2
