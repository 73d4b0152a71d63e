"""The order form's patient box in Chromium (issue 13): Enter there never
sends the order (it picks the only suggestion, or does nothing), and a
name typed without picking orders for the one patient it names. Screens
of the form's errors at desktop and tablet widths."""

from __future__ import annotations

from datetime import date, timedelta

import playwright.sync_api as playwright_api
import pytest
from sqlalchemy import func, select

from ghimaging import clock
from ghimaging.extensions import db
from ghimaging.models import ImagingRequest
from ghimaging.models._time import utcnow
from tests.support.browser import shoot
from tests.support.browser import sign_in as browser_sign_in
from tests.support.factories import PASSWORD

expect = playwright_api.expect

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}


def ordered() -> list[ImagingRequest]:
    db.session.expire_all()
    return list(db.session.scalars(select(ImagingRequest).order_by(ImagingRequest.id)))


def count_requests() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(ImagingRequest)) or 0


@pytest.fixture
def people(make_user, create_patient, catalog):
    make_user("doc", "physician", full_name="Dr Ana Ferreira")
    return {
        "okafor": create_patient(puid="GH-0101", family_name="Okafor", given_name="Chidi", birth_date=date(1975, 4, 3),
                                 alerts="Allergic to iodinated contrast"),
        "mbeki": create_patient(puid="GH-0102", family_name="Mbeki", given_name="Thandi"),
        "garcia1": create_patient(puid="GH-0201", family_name="García", given_name="Ana"),
        "garcia2": create_patient(puid="GH-0202", family_name="Garcia", given_name="Luis"),
    }


@pytest.fixture
def desk(browser, live, people):
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    page = context.new_page()
    browser_sign_in(page, live, "doc", PASSWORD)
    yield page
    context.close()


def open_form(page, base: str) -> None:
    page.goto(base + "/requests/new")
    page.get_by_label("Chest X-ray PA").check()  # an Enter that submitted would order it


def press_enter_and_stay(page) -> None:
    """Enter in the box; then a round trip to the server from this page: a
    submit started by the Enter would have replaced the page (and its
    marker) by then."""
    page.evaluate("() => { window.__stayed = true; }")
    page.locator("#patient").press("Enter")
    page.evaluate("() => fetch('/patients/lookup?q=x', {credentials: 'same-origin'}).then(r => r.status)")
    assert page.evaluate("() => window.__stayed === true"), "Enter left the page"
    assert page.url.endswith("/requests/new")


def test_enter_in_the_patient_box_never_sends_the_order(desk, live, people):
    page = desk
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    open_form(page, live)
    box = page.locator("#patient")

    box.press_sequentially("garc", delay=30)  # two patients: nothing to pick
    expect(page.locator("#patient-options option")).to_have_count(2)
    press_enter_and_stay(page)
    expect(box).to_have_value("garc")

    box.fill("")
    box.press_sequentially("okafor", delay=30)  # one patient: Enter picks them
    expect(page.locator("#patient-options option")).to_have_count(1)
    press_enter_and_stay(page)
    expect(box).to_have_value("GH-0101")
    expect(page.locator("#patient-picked")).to_contain_text("Okafor, Chidi · born 1975-04-03")
    expect(page.locator("#patient-alerts")).to_contain_text("Allergic to iodinated contrast")
    press_enter_and_stay(page)  # a second Enter on the picked PUID does nothing either
    assert posts == [] and count_requests() == 0

    page.get_by_role("button", name="Order and submit").click()
    expect(page.locator(".flash-success")).to_contain_text("1 request(s) submitted")
    [req] = ordered()
    assert req.patient_id == people["okafor"].id


def test_a_unique_name_typed_without_picking_orders_for_that_patient(desk, live, people, shots):
    page = desk
    open_form(page, live)
    page.locator("#patient").fill("mbeki thandi")
    page.get_by_role("button", name="Save as draft").click()
    # Found by name: shown (PUID in the box, name and birth date said) and
    # not ordered until sent again after a look.
    expect(page.locator("#patient")).to_have_value(people["mbeki"].puid)
    expect(page.locator(".field.picker .error")).to_contain_text("Found Mbeki, Thandi")
    assert ordered() == []
    page.get_by_role("button", name="Save as draft").click()
    expect(page.locator(".flash-success")).to_contain_text("saved as draft")
    [req] = ordered()
    assert req.patient_id == people["mbeki"].id
    expect(page.locator("main")).to_contain_text("Mbeki, Thandi")

    # Several matches: listed at the box, nothing ordered, what was typed kept.
    open_form(page, live)
    page.locator("#patient").fill("garcia")
    yesterday = clock.to_local(utcnow()) - timedelta(days=1)
    page.locator("#scheduled_date").fill(yesterday.strftime("%Y-%m-%d"))
    page.locator("#scheduled_time").fill("09:00")
    page.get_by_role("button", name="Order and submit").click()
    error = page.locator(".picker .error")
    expect(error).to_contain_text("2 patients match \u201cgarcia\u201d \u2014 pick one from the list")
    expect(error).to_contain_text("García, Ana (GH-0201")
    expect(page.locator("#patient")).to_have_value("garcia")
    confirm = page.get_by_label("Yes, schedule in the past")
    expect(confirm).to_be_visible()
    expect(confirm).not_to_be_checked()
    assert count_requests() == 1
    for name, size in (("desktop", DESKTOP), ("tablet", TABLET)):
        page.set_viewport_size(size)
        shoot(page, shots, f"order-traps-{name}")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

    # Picked and confirmed: ordered in the past, for the patient picked.
    page.set_viewport_size(DESKTOP)
    page.locator("#patient").fill("GH-0202")
    confirm.check()
    page.get_by_role("button", name="Order and submit").click()
    expect(page.locator(".flash-success")).to_contain_text("1 request(s) submitted")
    req = ordered()[-1]
    assert req.patient_id == people["garcia2"].id
    assert clock.to_local(req.scheduled_at).date() == yesterday.date()
