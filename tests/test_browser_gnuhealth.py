"""The GNU Health pages as clinic staff use them, in Debian's headless
Chromium against a real GNU Health 5.0: the admin checks the connection,
a technologist finds a patient there from the order form and imports
them, and the request page says whether it reached GNU Health."""

from __future__ import annotations

from datetime import date

import pytest
from playwright.sync_api import expect

from tests.support.browser import shoot, sign_in
from tests.support.factories import PASSWORD
from tests.support.gnuhealth import Rpc

pytestmark = pytest.mark.browser


def test_admin_checks_the_connection_and_a_technologist_imports_a_patient_for_an_order(
        browser, live, shots, make_user, gnuhealth_settings, catalog):
    make_user("boss", "admin", full_name="Clinic Admin")
    make_user("doc", "physician", full_name="Dora Doctor")
    admin = gnuhealth_settings.admin()
    party = admin.create("party.party", {"name": "Élodie", "lastname": "Lefèvre", "is_person": True,
                                         "is_patient": True, "gender": "f", "dob": Rpc.date(date(1988, 12, 1)),
                                         "ref": "GH-0451-77", "fed_country": "XXX"})
    admin.create("gnuhealth.patient", {"party": party})

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    try:
        sign_in(page, live, "boss", PASSWORD)
        page.goto(live + "/admin/gnuhealth/")
        page.get_by_role("button", name="Test connection").click()
        expect(page.locator("body")).to_contain_text("health_imaging")
        assert gnuhealth_settings.password not in page.content(), "the password is never shown"
        shoot(page, shots, "gnuhealth-settings")
        page.goto(live + "/admin/gnuhealth/outbox")
        expect(page.locator("h1")).to_have_text("GNU Health outbox")
        shoot(page, shots, "gnuhealth-outbox")
        page.get_by_role("button", name="Sign out").click()

        sign_in(page, live, "doc", PASSWORD)
        page.goto(live + "/requests/new")
        page.get_by_role("link", name="Find the patient in GNU Health").click()
        page.get_by_label("PUID or name").fill("Lefèvre")
        page.keyboard.press("Enter")
        row = page.locator("[data-gnuhealth-patient]").filter(has_text="Lefèvre")
        expect(row).to_contain_text("GH-0451-77")
        shoot(page, shots, "gnuhealth-patient-search")
        row.get_by_role("button", name="Import").click()
        expect(page.locator("body")).to_contain_text("Lefèvre, Élodie")
        shoot(page, shots, "gnuhealth-imported-to-order")
    finally:
        context.close()
