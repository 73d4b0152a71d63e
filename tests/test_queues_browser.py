"""The start page per role in Debian's Chromium, on a desktop and a tablet:
each role's sections are there, the navigation counts them, one click opens
the first item; screenshots in test-artifacts/screenshots/queues-*.png."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from ghimaging.extensions import db
from ghimaging.imaging import queues
from tests.support.browser import shoot, sign_in
from tests.support.factories import PASSWORD
from tests.test_queues import _report, arrives

VIEWPORTS = {"desktop": {"width": 1366, "height": 768}, "tablet": {"width": 820, "height": 1180}}


@pytest.fixture
def clinic_day(app, make_user, create_request, create_patient, catalog, orthanc, orthanc_row):
    doc = make_user("doc", "physician", full_name="Gregory House")
    make_user("tech", "technologist", full_name="Tina Tech")
    rad = make_user("rad", "radiologist", full_name="Rita Rad")
    rad2 = make_user("rad2", "radiologist", full_name="Ralf Rad")
    day = queues.Day.of()
    names = [("Weiß", "Günther"), ("Okafor", "Ada"), ("Lindqvist", "Sven"), ("Moreau", "Claire"),
             ("Tanaka", "Yuki"), ("Haddad", "Omar"), ("Novak", "Petra")]
    patients = [create_patient(family_name=f, given_name=g) for f, g in names]

    def order(i, test="chest", hours=None, **kw):
        return create_request(patients[i], catalog[test], user=doc, physician=doc, submit=True,
                              scheduled_at=day.start + timedelta(hours=hours) if hours is not None else None,
                              clinical_context=kw.pop("context", "Cough for three weeks, fever. Pneumonia?"), **kw)

    done = order(0, hours=8)
    prelim = order(1, hours=9)
    images = order(2, hours=10, urgent=True, context="Fall from a ladder, pain in the left chest wall.")
    order(3, hours=11)
    order(4, "abd", hours=9.5, context="Right upper quadrant pain after meals. Gallstones?")
    order(5, hours=-14)  # yesterday, not performed
    order(6, "abd")  # no time given
    for req in (done, prelim, images):
        arrives(orthanc, orthanc_row, req, instances=3)
    _report(prelim, rad2)
    _report(done, rad, final=True)
    db.session.commit()
    return {"images": images}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_each_role_sees_its_start_page(browser, live, shots, clinic_day, viewport):
    for user, section, heading in (("tech", "#today", "Today"), ("rad", "#reporting", "To report"),
                                   ("doc", "#my-orders", "My orders")):
        ctx = browser.new_context(viewport=VIEWPORTS[viewport])
        page = ctx.new_page()
        try:
            sign_in(page, live, user, PASSWORD)
            expect(page.locator(section).get_by_role("heading", name=heading, exact=False).first).to_be_visible()
            shoot(page, shots, f"queues-{user}-{viewport}")
            if user == "rad":
                expect(page.locator('[data-queue="to_report"] .navcount')).to_have_text("1")
                page.locator("#to-report").get_by_role("link", name="Report").first.click()
                page.wait_for_url(f"**/requests/{clinic_day['images'].id}/result")
        finally:
            ctx.close()


def test_the_tablet_start_page_does_not_scroll_sideways(browser, live, clinic_day):
    ctx = browser.new_context(viewport=VIEWPORTS["tablet"])
    page = ctx.new_page()
    try:
        sign_in(page, live, "tech", PASSWORD)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= VIEWPORTS["tablet"]["width"], width
    finally:
        ctx.close()
