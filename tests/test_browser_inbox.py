"""A study from a modality that kept neither the StudyInstanceUID nor the
AccessionNumber lands in the Unmatched inbox; a technologist links it by hand
in Debian's headless Chromium, and the request shows its images."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import LinkEvent, StudyLink
from ghimaging.orthanc import sync
from tests.support import dicomgen
from tests.support.browser import sign_in
from tests.support.factories import PASSWORD
from tests.test_browser_orthanc import shoot

pytestmark = pytest.mark.browser


def test_an_unmatched_study_is_suggested_and_linked_by_hand(browser, live, shots, make_user, create_patient,
                                                            create_request, catalog, orthanc, orthanc_row):
    tech = make_user("theo", "technologist", full_name="Theo Technologist")
    patient = create_patient(puid="WALK-1", family_name="Walker", given_name="Ann")
    req = create_request(patient, catalog["chest"], submit=True)
    # The modality kept the patient but rewrote both numbers.
    orthanc.upload(dicomgen.to_bytes(dicomgen.make_instance("WALK-1", "WALKER^ANN", accession="XYZ-999",
                                                            modality="CR", rows=32, cols=32)))
    sync.run(orthanc_row.id)
    assert db.session.scalar(select(StudyLink)) is None

    context = browser.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live, "theo", PASSWORD)
        page.get_by_role("link", name="Inbox").click()
        expect(page.locator("h1")).to_have_text("Inbox")
        suggestion = page.locator("form.suggestion").filter(has_text=req.accession_number)
        expect(suggestion).to_contain_text("same patient (PatientID = PUID)")
        shoot(page, shots, "inbox")
        suggestion.get_by_role("button", name="Link").click()
        expect(page.locator(".flash-success")).to_contain_text(f"linked to request {req.accession_number}")
        expect(page.locator("td.empty")).to_contain_text("Every study is linked")

        page.goto(f"{live}/requests/{req.id}")
        expect(page.locator("h2").filter(has_text="Images")).to_contain_text("images available")
        expect(page.locator(".link-row")).to_contain_text("linked by hand")
        shoot(page, shots, "request-with-images")
    finally:
        context.close()

    db.session.expire_all()
    link = db.session.scalar(select(StudyLink))
    assert link.request_id == req.id and link.method == "manual" and link.created_by_id == tech.id
    event = db.session.scalar(select(LinkEvent).where(LinkEvent.action == "link"))
    assert event.user_id == tech.id and event.method == "manual" and event.at is not None


def test_a_study_of_another_patient_is_linked_only_after_a_checked_confirmation_with_a_reason(
        browser, live, shots, make_user, create_patient, create_request, catalog, orthanc, orthanc_row):
    make_user("theo", "technologist", full_name="Theo Technologist")
    patient = create_patient(puid="D-100", family_name="Doe", given_name="Dana")
    req = create_request(patient, catalog["chest"], submit=True)
    # Another patient's images carrying this order's accession number.
    orthanc.upload(dicomgen.to_bytes(dicomgen.make_instance("E-200", "ERIKSEN^ERIK", accession=req.accession_number,
                                                            modality="CR", rows=32, cols=32)))
    sync.run(orthanc_row.id)
    assert db.session.scalar(select(StudyLink)) is None

    context = browser.new_context(viewport={"width": 820, "height": 1180})  # a tablet
    page = context.new_page()
    try:
        sign_in(page, live, "theo", PASSWORD)
        page.goto(live + "/orthanc/unmatched")
        row = page.locator("#unmatched tbody tr").first
        expect(row.locator("td.reasons")).to_contain_text("it is of another patient")
        expect(row).to_contain_text("Different patient")
        shoot(page, shots, "inbox-other-patient")
        row.get_by_role("button", name="Check…").click()
        expect(page.locator("h1")).to_have_text("Link a study of another patient?")
        expect(page.locator("#identities")).to_contain_text("E-200")
        expect(page.locator("#identities")).to_contain_text("D-100")
        shoot(page, shots, "link-other-patient")
        page.fill("#reason", "Modality typed the wrong ID; checked with the patient")
        page.get_by_label("I have checked").check()
        page.get_by_role("button", name="Link to this request").click()

        page.goto(f"{live}/requests/{req.id}")
        expect(page.locator("[id^=other-patient-]")).to_contain_text("Images of another patient")
        shoot(page, shots, "request-other-patient")
    finally:
        context.close()
    db.session.expire_all()
    link = db.session.scalar(select(StudyLink))
    assert link.other_patient and link.reason.startswith("Modality typed")
