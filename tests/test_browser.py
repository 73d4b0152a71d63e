"""The flows a person clicks through, in Debian's headless Chromium driven by
Playwright, against the real application served on a loopback port from
the suite's database. Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
from flask import url_for

from ghimaging.extensions import db
from tests.support.browser import shoot as browser_shot
from tests.support.browser import sign_in as browser_sign_in
from tests.support.factories import PASSWORD, png_bytes

expect = playwright_api.expect

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
TABLET = {"width": 768, "height": 1024}

FAMILY = "Núñez Łukasiewicz"
GIVEN = "Zoë Ånja"
PUID = "GHB-0001"
CAPTION = "Consolidation in the right lower lobe (posteroanterior view)"


def shoot(page, folder: Path, name: str) -> None:
    browser_shot(page, folder, f"{name}")


@pytest.fixture
def server(live):
    return live


def sign_in(page, base: str, username: str, folder: Path | None = None) -> None:
    if folder:
        page.goto(base + "/login")
        shoot(page, folder, "01-login")
    browser_sign_in(page, base, username, PASSWORD)


def pick_patient(page, typed: str):
    """Type into the picker as a person would; the datalist offers PUIDs."""
    box = page.locator("#patient")
    box.fill("")
    box.press_sequentially(typed, delay=40)
    options = page.locator("#patient-options option")
    expect(options, f"the picker offers nobody for {typed!r}").not_to_have_count(0)
    return options


def test_order_submit_report_and_print_with_an_image(browser, server, shots, make_user, catalog):
    make_user("doc", "physician", "radiologist", full_name="Dr Ana Ferreira")
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    page = context.new_page()
    try:
        sign_in(page, server, "doc", shots)
        shoot(page, shots, "02-dashboard")

        # Register a patient through the form.
        page.get_by_role("link", name="Patients").click()
        page.get_by_role("link", name="Register patient").click()
        page.fill("#puid", PUID)
        page.fill("#family_name", FAMILY)
        page.fill("#given_name", GIVEN)
        page.fill("#birth_date", "1975-04-12")
        page.select_option("#sex", "F")
        page.fill("#phone", "+351 912 345 678")
        shoot(page, shots, "03-patient-form")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("h1")).to_have_text(f"{FAMILY}, {GIVEN}")
        expect(page.locator(".flash-success")).to_contain_text("registered")
        shoot(page, shots, "04-patient")

        # Order two tests; the picker finds the patient from part of the name.
        page.goto(server + "/requests/new")
        options = pick_patient(page, "Núñez")
        expect(options).to_have_count(1)
        assert options.first.get_attribute("value") == PUID
        page.locator("#patient").fill(options.first.get_attribute("value"))
        expect(page.locator("#patient-picked")).to_contain_text(FAMILY)
        page.get_by_label("CR · Chest X-ray PA").check()
        page.get_by_label("US · Abdominal ultrasound").check()
        page.fill("#clinical_context", "Cough and fever for three weeks; rule out pneumonia.")
        shoot(page, shots, "05-order-form")
        page.get_by_role("button", name="Save as draft").click()
        expect(page.locator(".flash-success")).to_contain_text("2 request(s) saved as draft")
        rows = page.locator("table.table tbody tr")
        expect(rows).to_have_count(2)
        shoot(page, shots, "06-patient-with-orders")

        # Submit one of the two.
        chest_row = rows.filter(has_text="Chest X-ray PA")
        chest_row.locator("a").first.click()
        page.get_by_role("button", name="Submit").click()
        expect(page.locator(".flash-success")).to_contain_text("submitted")
        expect(page.locator("h1 .badge").first).to_have_text("Scheduled")  # the state people see
        shoot(page, shots, "07-request-submitted")

        # Generate its result with an image and a caption.
        page.get_by_role("link", name="Generate result").click()
        page.select_option("#report_style", "with_images")
        page.fill("#report", "Patchy consolidation in the right lower lobe.\nNo pleural effusion.")
        page.set_input_files("#new_images-0-file", files=[
            {"name": "chest.png", "mimeType": "image/png", "buffer": png_bytes(size=(64, 48)).getvalue()}])
        page.fill("#new_images-0-caption", CAPTION)
        shoot(page, shots, "08-result-form")
        page.once("dialog", lambda dialog: dialog.accept())  # "Finalise this report?"
        page.get_by_role("button", name="Save and finalise").click()
        expect(page.locator(".flash-success")).to_contain_text("is done")
        expect(page.locator(".report-images figure img")).to_have_count(1)
        shoot(page, shots, "09-result")

        # The print page shows the image and its caption.
        with context.expect_page() as opened:
            page.get_by_role("link", name="Print").click()
        sheet = opened.value
        sheet.wait_for_load_state("load")
        img = sheet.locator(".report-images img")
        expect(img).to_have_count(1)
        assert img.evaluate("i => i.complete && i.naturalWidth") == 64
        assert img.evaluate("i => i.naturalHeight") == 48
        expect(sheet.locator(".report-images figcaption")).to_have_text(CAPTION)
        expect(sheet.locator("table.ids")).to_contain_text(f"{FAMILY}, {GIVEN}")
        expect(sheet.locator("table.ids")).to_contain_text(PUID)
        expect(sheet.locator(".report-text").first).to_contain_text("No pleural effusion.")
        shoot(sheet, shots, "10-print")

        # The other request of the order is still a draft.
        page.goto(server + "/patients/")
        page.get_by_role("link", name=PUID).click()
        expect(rows.filter(has_text="Abdominal ultrasound").locator(".badge.progress-draft")).to_have_count(1)
        expect(rows.filter(has_text="Chest X-ray PA").locator(".badge.progress-final")).to_have_count(1)
    finally:
        context.close()


def test_request_list_and_order_form_fit_a_tablet(browser, server, shots, make_user, create_request, catalog):
    make_user("doc", "physician", "radiologist")
    for n in range(3):
        create_request(test=catalog["chest" if n % 2 else "abd"], submit=bool(n), urgent=n == 2)
    context = browser.new_context(viewport=TABLET, device_scale_factor=1, has_touch=True)
    page = context.new_page()
    try:
        sign_in(page, server, "doc")
        page.goto(server + "/requests?state=all")
        expect(page.locator("main")).to_contain_text("Chest X-ray PA")
        shoot(page, shots, "tablet-requests")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= TABLET["width"], "the request list scrolls sideways on a tablet"

        page.goto(server + "/requests/new")
        expect(page.get_by_role("button", name="Order and submit")).to_be_visible()
        shoot(page, shots, "tablet-order-form")
        assert page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
    finally:
        context.close()


def test_patient_picker_ignores_the_case_of_accented_letters(browser, server, make_user, create_patient):
    """Clinics type names as they come: 'łukasiewicz' or 'ÉLODIE' must find
    'Łukasiewicz' and 'Élodie'."""
    make_user("doc", "physician")
    create_patient(puid="P-PL", family_name="Łukasiewicz", given_name="Jan")
    create_patient(puid="P-FR", family_name="Dubois", given_name="Élodie")
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, server, "doc")
        page.goto(server + "/requests/new")
        for typed, puid in (("Łukas", "P-PL"), ("łukasiewicz", "P-PL"), ("ÉLODIE", "P-FR")):
            options = pick_patient(page, typed)
            expect(options).to_have_count(1)
            assert options.first.get_attribute("value") == puid, typed
    finally:
        context.close()


@pytest.fixture
def populated(app, make_user, catalog, create_patient):
    """A patient with a draft, a requested and a done request with an image."""
    from ghimaging.imaging import workflow

    user = make_user("admin1", "admin", "physician", "radiologist")
    patient = create_patient(family_name="Gonçalves", given_name="Inês")
    draft, done = workflow.create_order(patient, [catalog["abd"], catalog["chest"]], user=user)
    workflow.submit(done, user)
    result = workflow.create_result(done, user, radiologist=user, result_date=date.today(), report="Normal.",
                                    new_images=[workflow.NewImage(png_bytes(), "key.png", "Key image")])
    db.session.commit()  # the fixture is the boundary: the served pages see it
    with app.test_request_context():
        paths = [
            url_for("imaging.dashboard"),
            url_for("imaging.request_list", state="all"),
            url_for("imaging.new_order", patient_id=patient.id),
            url_for("patients.index"),
            url_for("patients.new"),
            url_for("patients.view", patient_id=patient.id),
            url_for("imaging.view_request", request_id=draft.id),
            url_for("imaging.view_request", request_id=done.id),
            url_for("imaging.view_result", result_id=result.id),
            url_for("imaging.edit_result", result_id=result.id),
            url_for("imaging.print_result", result_id=result.id),
            url_for("catalog.index"),
            url_for("auth.users"),
            url_for("auth.account"),
            url_for("settings.clinic"),
        ]
    return {"user": user, "patient": patient, "paths": paths}


def test_pages_load_nothing_from_elsewhere_and_log_no_errors(browser, server, populated):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: problems.append(f"{page.url}: console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"{page.url}: page error: {e}"))
    page.on("response", lambda r: problems.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
    try:
        page.goto(server + "/login")
        sign_in(page, server, "admin1")
        for path in populated["paths"]:
            page.goto(server + path, wait_until="load")
            assert page.locator("body").inner_text().strip(), path
        # The picker's lookup runs from the page's own script.
        page.goto(server + populated["paths"][2])
        pick_patient(page, "Gonç")
        page.wait_for_load_state("networkidle")
    finally:
        context.close()

    outside = [u for u in requested if not (u.startswith(server + "/") or u.startswith("data:"))]
    assert outside == []
    assert any("/static/css/app.css" in u for u in requested)
    assert any("/patients/lookup" in u for u in requested)
    assert any(re.search(r"/results/images/[^/]+$", u) for u in requested)
    assert problems == []
