"""A patient's alerts and allergies (issue 13 §5): typed on the patient
form, kept through the API and a GNU Health import, shown in red on the
patient page and the order form (for a patient the form opens with, and in
the picker's answer); and the clinic's day and date format on the result
pages (the default result date, the desk's age, the result page's date,
the order form's birth date, the PDF link beside Print)."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime

import pytest

from ghimaging import clock
from ghimaging.extensions import db
from ghimaging.imaging import desk, workflow
from ghimaging.models import Patient
from ghimaging.patients import service as patients
from ghimaging.settings import service as settings
from tests.support.web import CsrfClient

ALERTS = "Allergic to iodinated contrast\n\n  Pacemaker  \n"


def set_clinic(**values: str) -> None:
    settings.save_clinic_settings(values)
    db.session.commit()


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def alerts_shown(body: str) -> list[str] | None:
    """The lines of the red alerts box, or None where no box is shown."""
    m = re.search(r'<div class="flash flash-error patient-alerts"[^>]*?( hidden)?>(.*?)</div>', body, re.S)
    assert m is not None or "patient-alerts" not in body
    if m is None or m.group(1):
        return None
    return re.findall(r"<li>(.*?)</li>", m.group(2))


def fresh(patient_id: int) -> Patient:
    db.session.expire_all()
    p = db.session.get(Patient, patient_id)
    assert p is not None
    return p


@pytest.fixture
def tech(make_user, login) -> CsrfClient:
    make_user("tech", "technologist", "physician")
    return login("tech")


def form(**kw: str) -> dict[str, str]:
    data = {"puid": "AL-1", "family_name": "Quispe", "given_name": "Rosa", "birth_date": "1961-02-03",
            "sex": "F", "phone": "", "notes": "", "alerts": ALERTS}
    data.update(kw)
    return data


# -- the patient form and page ---------------------------------------------------

def test_alerts_typed_on_the_patient_form_show_on_the_patient_page(app, tech):
    assert "Alerts and allergies (one per line)" in page(tech.get("/patients/new"))
    resp = tech.post("/patients/new", form(), token_from="/patients/new")
    assert resp.status_code == 302, page(resp)
    patient = patients.by_puid("AL-1")
    assert patient is not None
    assert patient.alerts == "Allergic to iodinated contrast\nPacemaker", "one per line, blank lines dropped"
    assert alerts_shown(page(tech.get(f"/patients/{patient.id}"))) == ["Allergic to iodinated contrast", "Pacemaker"]
    edit = page(tech.get(f"/patients/{patient.id}/edit"))
    assert re.search(r'<textarea[^>]*name="alerts"[^>]*>\s*Allergic to iodinated contrast\nPacemaker</textarea>', edit)

    resp = tech.post(f"/patients/{patient.id}/edit", form(alerts=""), token_from=f"/patients/{patient.id}/edit")
    assert resp.status_code == 302
    assert fresh(patient.id).alerts == ""
    assert alerts_shown(page(tech.get(f"/patients/{patient.id}"))) is None


def test_alerts_too_long_are_refused_at_the_field(app, tech):
    resp = tech.post("/patients/new", form(alerts="x" * 2001), token_from="/patients/new")
    assert resp.status_code == 400
    assert "at most 2000 characters" in page(resp).lower()
    assert patients.by_puid("AL-1") is None


def test_an_update_naming_no_alerts_keeps_them(app, create_patient):
    """A GNU Health import updates name and birth date; it has no alerts to
    give and must not wipe the clinic's."""
    patient = create_patient(family_name="Mamani")
    patient.alerts = "Latex allergy"
    db.session.commit()
    patients.update_patient(patient, {"puid": patient.puid, "family_name": "Mamani Choque",
                                      "given_name": "", "sex": patient.sex})
    db.session.commit()
    assert fresh(patient.id).alerts == "Latex allergy"


# -- the API ------------------------------------------------------------------------

def test_the_api_takes_and_gives_alerts(app, api):
    client = api("technologist")
    resp = client.post("/api/v1/patients", json={"puid": "AL-API", "family_name": "Condori", "sex": "M",
                                                 "alerts": "Penicillin allergy\nDiabetic"})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["alerts"] == "Penicillin allergy\nDiabetic"
    got = client.get(resp.headers["Location"]).get_json()
    assert got["alerts"] == "Penicillin allergy\nDiabetic"

    too_long = client.post("/api/v1/patients", json={"puid": "AL-API2", "family_name": "Condori", "sex": "M",
                                                     "alerts": "x" * 2001})
    assert too_long.status_code == 422
    assert "alerts" in too_long.get_json()["fields"]
    not_text = client.post("/api/v1/patients", json={"puid": "AL-API3", "family_name": "Condori", "sex": "M",
                                                    "alerts": ["a", "b"]})
    assert not_text.status_code == 422
    assert "alerts" in not_text.get_json()["fields"]
    assert patients.by_puid("AL-API2") is None and patients.by_puid("AL-API3") is None
    schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["PatientIn"]
    assert schema["properties"]["alerts"]["maxLength"] == 2000


# -- the order form ---------------------------------------------------------------

def test_the_order_form_shows_the_alerts_of_the_patient_it_opens_with(app, tech, create_patient, catalog):
    set_clinic(date_format="dd.mm.yyyy")
    patient = create_patient(family_name="Huanca", birth_date=date(1970, 5, 4))
    patient.alerts = ALERTS
    db.session.commit()
    body = page(tech.get(f"/requests/new?patient_id={patient.id}"))
    assert alerts_shown(body) == ["Allergic to iodinated contrast", "Pacemaker"]
    assert "born 04.05.1970" in body, "the birth date in the clinic's format"

    other = create_patient(family_name="Torrez")
    assert alerts_shown(page(tech.get(f"/requests/new?patient_id={other.id}"))) is None
    blank = page(tech.get("/requests/new"))
    assert 'id="patient-alerts"' in blank, "the box the picker fills is there, hidden"
    assert alerts_shown(blank) is None


def test_the_picker_answer_carries_the_alerts(app, tech, create_patient):
    patient = create_patient(family_name="Apaza")
    patient.alerts = ALERTS
    db.session.commit()
    rows = tech.get("/patients/lookup?q=Apaza").get_json()
    assert [r["alerts"] for r in rows] == [["Allergic to iodinated contrast", "Pacemaker"]]


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [{"width": 1366, "height": 768}, {"width": 820, "height": 1180}],
                         ids=["desktop", "tablet"])
def test_picking_a_patient_shows_their_alerts_in_the_browser(browser, live, shots, make_user, create_patient,
                                                             catalog, viewport):
    from playwright.sync_api import expect

    from tests.support.browser import shoot, sign_in
    from tests.support.factories import PASSWORD

    make_user("doc", "physician", "technologist")
    flagged = create_patient(puid="AL-B1", family_name="Choque", given_name="Rosa")
    flagged.alerts = "Allergic to iodinated contrast\nPacemaker"
    create_patient(puid="AL-B2", family_name="Vargas")
    db.session.commit()
    size = f"{viewport['width']}"
    context = browser.new_context(viewport=viewport)
    page_ = context.new_page()
    try:
        sign_in(page_, live, "doc", PASSWORD)
        page_.goto(live + "/requests/new")
        box = page_.locator("#patient-alerts")
        expect(box).to_be_hidden()
        page_.locator("#patient").press_sequentially("Choque", delay=30)
        expect(page_.locator("#patient-options option")).to_have_count(1)
        page_.locator("#patient").fill("AL-B1")
        expect(box).to_be_visible()
        expect(box.locator("li")).to_have_text(["Allergic to iodinated contrast", "Pacemaker"])
        shoot(page_, shots, f"alerts-order-form-{size}")
        assert page_.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page_.locator("#patient").fill("")
        page_.locator("#patient").press_sequentially("Vargas", delay=30)
        expect(box).to_be_hidden()
        expect(page_.locator("#patient-options option")).to_have_count(1)
        page_.locator("#patient").fill("AL-B2")
        expect(page_.locator("#patient-picked")).to_contain_text("Vargas")
        expect(box).to_be_hidden()

        page_.goto(live + f"/patients/{flagged.id}")
        expect(page_.locator("#patient-alerts li")).to_have_text(["Allergic to iodinated contrast", "Pacemaker"])
        shoot(page_, shots, f"alerts-patient-page-{size}")
        assert page_.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page_.goto(live + f"/patients/{flagged.id}/edit")
        expect(page_.get_by_label("Alerts and allergies (one per line)")).to_have_value(
            "Allergic to iodinated contrast\nPacemaker")
        shoot(page_, shots, f"alerts-patient-form-{size}")
    finally:
        context.close()


@pytest.mark.browser
def test_the_picker_names_only_the_patient_whose_puid_the_field_holds(browser, live, make_user, create_patient):
    """Three ways the order form once named the wrong patient: a PUID that
    is part of longer ones ("QX-1" also finds "QX-10") named nobody; an
    answer to an earlier search, arriving after a cached patient was picked,
    replaced them; and the patient the form opened with stayed named (alerts
    gone) after an unknown PUID was typed."""
    from playwright.sync_api import expect

    from tests.support.browser import sign_in
    from tests.support.factories import PASSWORD

    make_user("doc", "physician", "technologist")
    one = create_patient(puid="QX-1", family_name="Zuniga", given_name="Uno")
    one.alerts = "Latex allergy"
    create_patient(puid="QX-10", family_name="Abarca", given_name="Diez")  # sorted first in the answer
    flagged = create_patient(puid="AL-B1", family_name="Choque", given_name="Rosa")
    flagged.alerts = "Allergic to iodinated contrast\nPacemaker"
    create_patient(puid="AL-B2", family_name="Vargas", given_name="Ana")
    db.session.commit()
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page_ = context.new_page()
    field, said, box = page_.locator("#patient"), page_.locator("#patient-picked"), page_.locator("#patient-alerts")
    try:
        sign_in(page_, live, "doc", PASSWORD)

        # The exact PUID among several answers.
        page_.goto(live + "/requests/new")
        field.fill("QX-1")
        expect(page_.locator("#patient-options option")).to_have_count(2)
        expect(said).to_contain_text("Zuniga, Uno")
        expect(box.locator("li")).to_have_text(["Latex allergy"])
        field.fill("QX-10")  # known now: shown at once, the other's alert gone
        expect(said).to_contain_text("Abarca, Diez")
        expect(box).to_be_hidden()

        # An answer to an earlier search arrives after another patient was picked.
        held = []
        page_.route("**/patients/lookup?q=AL-B1*", lambda route: held.append(route))
        field.fill("")
        field.press_sequentially("Vargas", delay=30)
        expect(page_.locator("#patient-options option")).to_have_count(1)  # AL-B2 known now
        field.fill("AL-B1")
        expect(said).not_to_contain_text("Vargas")
        for _ in range(100):
            if held:
                break
            page_.wait_for_timeout(50)
        assert held, "the search for AL-B1 was sent"
        field.fill("AL-B2")
        expect(said).to_contain_text("Vargas, Ana")
        with page_.expect_response(lambda r: "q=AL-B1" in r.url) as answer:
            held[0].continue_()
        answer.value.finished()
        page_.evaluate("() => new Promise(r => setTimeout(r, 300))")  # let the page handle the late answer
        expect(field).to_have_value("AL-B2")
        expect(said).to_contain_text("Vargas, Ana")
        expect(said).not_to_contain_text("Choque")
        expect(box).to_be_hidden()

        # The patient the form opened with, then an unknown PUID typed over it.
        page_.unroute("**/patients/lookup?q=AL-B1*")
        page_.goto(live + f"/requests/new?patient_id={flagged.id}")
        expect(said).to_contain_text("Choque, Rosa")
        expect(box).to_be_visible()
        field.fill("NOBODY-404")
        expect(said).not_to_contain_text("Choque")
        expect(said).to_contain_text("Type a name or PUID")
        expect(box).to_be_hidden()
        field.fill("AL-B1")  # and back: named again, alerts again
        expect(said).to_contain_text("Choque, Rosa")
        expect(box.locator("li")).to_have_text(["Allergic to iodinated contrast", "Pacemaker"])
    finally:
        context.close()


# -- the clinic's day and date format on the result pages --------------------------

def _zone_on_another_day() -> str:
    """A real zone whose date differs from UTC's right now (UTC+14 from
    10:00 UTC, UTC-11 before 11:00 UTC)."""
    return "Pacific/Kiritimati" if datetime.now(UTC).hour >= 10 else "Pacific/Pago_Pago"


@pytest.fixture
def rad(make_user):
    return make_user("rad", "radiologist", full_name="Dr Rita Rad")


def test_a_new_result_is_dated_the_clinics_today_and_the_desk_counts_age_by_it(app, rad, login, create_request,
                                                                               create_patient):
    set_clinic(time_zone=_zone_on_another_day())
    clinic_day = clock.today()
    machine_day = date.today()
    assert clinic_day != machine_day
    later = max(clinic_day, machine_day)
    patient = create_patient(birth_date=later.replace(year=later.year - 40))
    req = create_request(patient, submit=True)
    body = page(login("rad").get(f"/requests/{req.id}/result"))
    assert re.search(rf'name="result_date"[^>]*value="{clinic_day.isoformat()}"', body), "the clinic's today"
    with app.test_request_context():
        shown = desk.build(req, rad)
    assert shown.age == patient.age_on(clinic_day) != patient.age_on(machine_day)


def test_the_result_page_dates_in_the_clinics_format_and_links_the_pdf(app, rad, login, create_request):
    set_clinic(date_format="dd.mm.yyyy")
    req = create_request(submit=True)
    result = workflow.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report="Normal.")
    db.session.commit()
    body = page(login("rad").get(f"/results/{result.id}"))
    assert "<dt>Date</dt><dd>02.05.2024</dd>" in body
    assert re.search(rf'<a class="button" href="/results/{result.id}/report.pdf"[^>]*>PDF</a>', body)
