"""The desk's probable-duplicate warning in Chromium (issue 13 §5): a
physician registering a patient from the order form is shown the patient
already registered with the same birth date and a similar name, and "Use
existing" takes them back to the order for that patient; ticking "This is a
different person" saves the new one. Screenshots at 1366x768 and 820x1180
land in test-artifacts/screenshots/."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import Patient
from tests.support.browser import shoot, sign_in
from tests.support.factories import PASSWORD

pytestmark = pytest.mark.browser

SIZES = {"desktop": {"width": 1366, "height": 768}, "tablet": {"width": 820, "height": 1180}}


def fill_patient(page, family: str, given: str, born: str) -> None:
    page.fill("#puid", "NEW-77")
    page.fill("#family_name", family)
    page.fill("#given_name", given)
    page.fill("#birth_date", born)
    page.select_option("#sex", "M")


def test_a_look_alike_is_shown_and_use_existing_goes_back_to_the_order(browser, live, shots, make_user,
                                                                       create_patient, catalog):
    from playwright.sync_api import expect

    make_user("doc", "physician")
    existing = create_patient(puid="GH-1001", family_name="Müller", given_name="José",
                              birth_date=date(1975, 4, 3), sex="M")
    page = browser.new_page(viewport=SIZES["desktop"])
    try:
        sign_in(page, live, "doc", PASSWORD)
        page.goto(live + "/patients/new?then=order")
        fill_patient(page, "Muller", "Jose", "1975-04-03")
        page.get_by_role("button", name="Save").click()
        warning = page.locator("#probable-duplicates")
        expect(warning).to_be_visible()
        expect(warning).to_contain_text("Müller, José")
        expect(warning).to_contain_text("GH-1001")
        expect(page.get_by_label("This is a different person")).not_to_be_checked()
        for name, size in SIZES.items():
            page.set_viewport_size(size)
            shoot(page, shots, f"patient-duplicate-{name}")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        page.set_viewport_size(SIZES["desktop"])
        page.get_by_role("link", name="Use existing").click()
        page.wait_for_url(f"**/requests/new?patient_id={existing.id}")
        expect(page.locator("#patient")).to_have_value("GH-1001")
        expect(page.locator("#patient-picked")).to_contain_text("Müller, José")
    finally:
        page.close()
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Patient)) == 1


def test_a_different_person_is_saved_once_confirmed(browser, live, make_user, create_patient):
    from playwright.sync_api import expect

    make_user("tech", "technologist")
    create_patient(puid="GH-1001", family_name="Müller", given_name="José", birth_date=date(1975, 4, 3), sex="M")
    page = browser.new_page(viewport=SIZES["tablet"])
    try:
        sign_in(page, live, "tech", PASSWORD)
        page.goto(live + "/patients/new")
        fill_patient(page, "Muller", "Jose", "1975-04-03")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#probable-duplicates")).to_be_visible()
        page.get_by_label("This is a different person").check()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("registered with PUID NEW-77")).to_be_visible()
    finally:
        page.close()
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Patient)) == 2


def test_an_admin_turns_on_puid_allocation_and_the_form_says_assigned_on_save(browser, live, shots, make_user):
    from playwright.sync_api import expect

    make_user("boss", "admin")
    page = browser.new_page(viewport=SIZES["desktop"])
    try:
        sign_in(page, live, "boss", PASSWORD)
        page.goto(live + "/admin/settings/")
        page.get_by_label("Allocate PUIDs here").check()
        page.fill("#puid_pattern", "LP-#####")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Settings saved.")).to_be_visible()
        for name, size in SIZES.items():
            page.set_viewport_size(size)
            page.goto(live + "/admin/settings/")
            shoot(page, shots, f"settings-puid-{name}")
            page.goto(live + "/patients/new")
            expect(page.locator("#puid")).to_have_attribute("placeholder", "Assigned on save")
            shoot(page, shots, f"patient-new-allocated-{name}")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        page.fill("#family_name", "Condori")
        page.select_option("#sex", "F")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("registered with PUID LP-00001")).to_be_visible()
    finally:
        page.close()


def test_a_puid_images_carry_is_read_only_for_staff_and_asks_an_admin_why(browser, live, shots, make_user,
                                                                           create_patient, orthanc_row, upload):
    from playwright.sync_api import expect

    from ghimaging.orthanc import sync
    from tests.support import dicomgen

    make_user("tech", "technologist")
    make_user("boss", "admin")
    p = create_patient(puid="IMG-1", family_name="Quispe", given_name="Rosa")
    upload([dicomgen.make_instance("IMG-1", "QUISPE^ROSA")])
    assert sync.run(orthanc_row.id).error == ""
    db.session.commit()
    page = browser.new_page(viewport=SIZES["desktop"])
    try:
        sign_in(page, live, "tech", PASSWORD)
        for name, size in SIZES.items():
            page.set_viewport_size(size)
            page.goto(live + f"/patients/{p.id}/edit")
            expect(page.locator("#puid")).to_have_attribute("readonly", "")
            expect(page.locator("#puid-locked")).to_contain_text("only an administrator can change it")
            shoot(page, shots, f"patient-edit-locked-{name}")
        page.context.clear_cookies()
        sign_in(page, live, "boss", PASSWORD)
        page.set_viewport_size(SIZES["desktop"])
        page.goto(live + f"/patients/{p.id}/edit")
        page.fill("#puid", "IMG-2")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Say why the PUID changes")).to_be_visible()
        page.fill("#puid_reason", "The register merged two records")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#puid-changes")).to_contain_text("IMG-1 → IMG-2")
        shoot(page, shots, "patient-puid-changed-desktop")
    finally:
        page.close()
