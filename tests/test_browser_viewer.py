"""The built-in viewer in Debian's headless Chromium, on the reporting desk
(``/results/<id>/edit``) served from the suite's database against a real
Orthanc: scroll a multi-instance CT series (wheel, keys, slider), change
the window (preset and drag), add a key image; on a tablet viewport with
touch (a swipe scrolls, a tap adds). Screenshots land in
test-artifacts/screenshots/."""

from __future__ import annotations

import re
from datetime import date

import playwright.sync_api as playwright_api
import pytest
from pydicom.uid import generate_uid

from ghimaging.extensions import db
from ghimaging.imaging import reporting
from ghimaging.models import ImagingRequest, Result
from ghimaging.orthanc import sync
from ghimaging.orthanc.matching import studies_of
from tests.support import dicomgen
from tests.support.browser import shoot
from tests.support.browser import sign_in as browser_sign_in
from tests.support.factories import PASSWORD

expect = playwright_api.expect
pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}
COUNT = 6


@pytest.fixture
def desk(app, orthanc, orthanc_row, make_user, create_patient, create_request):
    """A radiologist, a request with a 6-image CT series mirrored and
    linked, and its preliminary result. Returns (result id, instance ids in order)."""
    doc = make_user("doc", "physician")
    rad = make_user("rad", "radiologist", full_name="Dr Rui Costa")
    patient = create_patient(family_name="Almeida", given_name="Beatriz")
    req = create_request(patient, submit=True, user=doc, physician=doc, clinical_context="Headache for 3 days.")
    series_uid = generate_uid()
    ids = []
    for i in range(COUNT):
        ds = dicomgen.make_instance(patient.puid, "Almeida^Beatriz", req.study_instance_uid, series_uid,
                                    accession=req.accession_number, modality="CT", rows=192, cols=192,
                                    instance_number=i + 1, series_description="HEAD AXIAL",
                                    extra={"RescaleIntercept": -1024, "RescaleSlope": 1,
                                           "WindowCenter": 40, "WindowWidth": 400})
        ids.append(orthanc.upload(dicomgen.to_bytes(ds))["ID"])
    summary = sync.run(orthanc_row.id, mode="full")
    assert summary.error == "", summary.error
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    assert len(studies_of(req)) == 1
    result = reporting.create_result(req, rad, radiologist=rad, result_date=date.today(), report="No bleed.")
    db.session.commit()
    return result.id, ids


def stage_instance(page) -> str:
    return page.locator("[data-stage]").get_attribute("data-instance") or ""


def wait_for(page, instance: str, window: str | None = None) -> None:
    stage = page.locator("[data-stage]")
    expect(stage).to_have_attribute("data-instance", instance)
    if window is not None:
        expect(stage).to_have_attribute("data-window", window)


def key_images(result_id: int) -> list:
    db.session.expire_all()
    return list(db.session.get(Result, result_id).images)


def test_scroll_window_and_add_a_key_image_on_the_desk(browser, live, shots, desk):
    result_id, ids = desk
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        browser_sign_in(page, live, "rad", PASSWORD)
        page.goto(f"{live}/results/{result_id}/edit")
        wait_for(page, ids[0], "40/400")
        expect(page.locator("[data-counter]")).to_have_text(f"Image 1 of {COUNT}")
        stage = page.locator("[data-stage]")
        stage.hover()
        page.mouse.wheel(0, 120)
        wait_for(page, ids[1])
        stage.focus()
        page.keyboard.press("ArrowDown")
        wait_for(page, ids[2])
        page.keyboard.press("End")
        wait_for(page, ids[-1])
        expect(page.locator("[data-counter]")).to_have_text(f"Image {COUNT} of {COUNT}")
        page.locator("[data-slider]").evaluate("(s) => { s.value = 4; s.dispatchEvent(new Event('input')); }")
        wait_for(page, ids[3])
        page.get_by_role("button", name="Lung").click()
        wait_for(page, ids[3], "-600/1500")
        # A drag in window mode: right widens, down raises the level.
        page.get_by_role("button", name="Window", exact=True).click()
        box = stage.bounding_box()
        assert box
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 40, y + 20, steps=4)
        page.mouse.up()
        expect(stage).not_to_have_attribute("data-window", "-600/1500")
        page.wait_for_function("() => !document.querySelector('[data-viewer]').viewer.loading")
        shown = stage.get_attribute("data-window") or ""
        center, width = (float(v) for v in shown.split("/"))
        assert width > 1500 and center > -600, shown
        shoot(page, shots, "viewer-desk-1366")
        page.fill("[data-caption]", "Axial slice 4")
        page.get_by_role("button", name="Add as key image").click()
        expect(page.locator("[data-key-status]")).to_contain_text("Key image added")
        expect(page.locator("[data-key-list] img")).to_have_count(1)
        [image] = key_images(result_id)
        assert image.caption == "Axial slice 4"
        assert page.evaluate("document.querySelector('[data-viewer]').viewer.shown.window.join('/')") == shown
        shoot(page, shots, "viewer-desk-1366-key-image")
    finally:
        context.close()


def swipe(page, cdp, x: float, y: float, dy: float, steps: int = 6) -> None:
    """One finger down at (x, y), moved by dy, lifted: real touch events."""
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for i in range(1, steps + 1):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y + dy * i / steps}]})
    page.wait_for_timeout(150)  # the finger rests before lifting: no fling, which would swallow the next tap
    cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y + dy}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_a_tablet_swipes_through_the_series_and_taps_a_key_image(browser, live, shots, desk):
    result_id, ids = desk
    context = browser.new_context(viewport=TABLET, has_touch=True, is_mobile=True, device_scale_factor=1)
    page = context.new_page()
    try:
        browser_sign_in(page, live, "rad", PASSWORD)
        page.goto(f"{live}/results/{result_id}/edit")
        wait_for(page, ids[0], "40/400")
        stage = page.locator("[data-stage]")
        stage.scroll_into_view_if_needed()
        box = stage.bounding_box()
        assert box
        cdp = context.new_cdp_session(page)
        swipe(page, cdp, box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.3, box["height"] * 0.5)
        expect(stage).not_to_have_attribute("data-instance", ids[0])
        moved_to = ids.index(stage_instance(page))
        assert moved_to > 0
        page.get_by_role("button", name="Bone").tap()
        wait_for(page, ids[moved_to], "400/1800")
        expect(page.get_by_role("button", name="Bone")).to_have_attribute("aria-pressed", "true")
        expect(page.get_by_role("button", name="Lung")).to_have_attribute("aria-pressed", "false")
        shoot(page, shots, "viewer-desk-820")
        page.get_by_role("button", name="Add as key image").tap()
        expect(page.locator("[data-key-status]")).to_contain_text("Key image added")
        assert len(key_images(result_id)) == 1
    finally:
        context.close()


def test_orthanc_going_away_is_said_over_the_image(browser, live, desk, orthanc):
    result_id, ids = desk
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        browser_sign_in(page, live, "rad", PASSWORD)
        page.goto(f"{live}/results/{result_id}/edit")
        wait_for(page, ids[0], "40/400")
        orthanc.kill()
        page.locator("[data-stage]").focus()
        page.keyboard.press("End")  # a frame the browser has not kept
        expect(page.locator("[data-message]")).to_be_visible()
        expect(page.locator("[data-message]")).to_contain_text("cannot be reached")
        expect(page.locator("[data-stage]")).to_have_attribute("data-instance", ids[0])  # the last good one stays
    finally:
        context.close()


@pytest.fixture
def two_series(app, orthanc, orthanc_row, make_user, create_patient, create_request):
    """A preliminary result whose study holds two CT series of different
    sizes and windows (series 1: 3 images 96 px, 40/400; series 2: 3 images
    128 px, 300/1500). Returns (result id, {number: (series id, instance ids)})."""
    doc = make_user("doc", "physician")
    rad = make_user("rad", "radiologist")
    patient = create_patient(family_name="Two", given_name="Series")
    req = create_request(patient, submit=True, user=doc, physician=doc)
    ids: dict[int, list[str]] = {1: [], 2: []}
    for number, size, (center, width) in ((1, 96, (40, 400)), (2, 128, (300, 1500))):
        series_uid = generate_uid()
        for i in range(3):
            ds = dicomgen.make_instance(patient.puid, "Two^Series", req.study_instance_uid, series_uid,
                                        accession=req.accession_number, modality="CT", rows=size, cols=size,
                                        series_number=number, instance_number=i + 1,
                                        series_description=f"SERIES {number}",
                                        extra={"RescaleIntercept": -1024, "RescaleSlope": 1,
                                               "WindowCenter": center, "WindowWidth": width})
            ids[number].append(orthanc.upload(dicomgen.to_bytes(ds))["ID"])
    assert sync.run(orthanc_row.id, mode="full").error == ""
    db.session.expire_all()
    [link] = studies_of(db.session.get(ImagingRequest, req.id))
    rows = {se.number: se.id for se in link.study.series}
    result = reporting.create_result(req, rad, radiologist=rad, result_date=date.today(), report="Two series.")
    db.session.commit()
    return result.id, {n: (rows[n], ids[n]) for n in (1, 2)}


class Held:
    """Requests matching ``pattern`` wait until ``release()``: a slow answer on demand."""

    def __init__(self, page, pattern: str) -> None:
        self.routes: list = []
        self.page, self.regex, self.held = page, re.compile(pattern), True
        page.route(self.regex, self.handle)

    def handle(self, route) -> None:
        if self.held:
            self.routes.append(route)
        else:
            route.continue_()

    def wait_held(self) -> None:
        for _ in range(200):
            if self.routes:
                break
            self.page.wait_for_timeout(50)
        assert self.routes, f"no request matched {self.regex.pattern}"

    def release(self) -> None:
        self.held = False
        while self.routes:
            self.routes.pop(0).continue_()


def test_switching_series_stores_the_key_image_that_was_on_the_screen(app, browser, live, shots, two_series):
    """A slow answer for the first series lands after the user picked the
    second: it is dropped, and the key image added is the second series'
    frame on the screen, under its window. While a newly picked series has
    not shown a frame, the key image button is disabled."""
    result_id, series = two_series
    (first_id, first), (second_id, second) = series[1], series[2]
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        browser_sign_in(page, live, "rad", PASSWORD)
        slow_json = Held(page, rf"/viewer/series/{first_id}$")
        first_frames = Held(page, rf"/viewer/series/{first_id}/instances/")
        page.goto(f"{live}/results/{result_id}/edit")
        add = page.get_by_role("button", name="Add as key image")
        expect(add).to_be_disabled()  # nothing on the screen yet
        slow_json.wait_held()
        page.select_option("[data-series]", f"/viewer/series/{second_id}")
        wait_for(page, second[0], "300/1500")
        expect(page.locator("[data-stage]")).to_have_attribute("data-series-id", str(second_id))
        page.locator("[data-stage]").focus()
        page.keyboard.press("End")
        wait_for(page, second[2])
        with page.expect_response(re.compile(rf"/viewer/series/{first_id}$")):
            slow_json.release()  # the first series' answer arrives late; its frames would be slow too
        page.wait_for_timeout(300)  # let the script handle it (there is no event for "ignored")
        expect(page.locator("[data-counter]")).to_have_text("Image 3 of 3")
        page.fill("[data-caption]", "Second series, last image")
        add.click()
        expect(page.locator("[data-key-status]")).to_contain_text("Key image added")
        shown_src = page.locator("[data-image]").get_attribute("src") or ""
        assert f"/viewer/series/{second_id}/instances/{second[2]}/frames/0" in shown_src
        [image] = key_images(result_id)
        with open(app.config["RESULT_IMAGE_DIR"] + "/" + image.stored_name, "rb") as fh:
            stored = fh.read()
        assert stored == page.request.get(live + shown_src).body(), "the key image is the frame on the screen"
        # Picking the first series again: until its frame is shown, no key image can be added.
        page.select_option("[data-series]", f"/viewer/series/{first_id}")
        expect(page.locator("[data-counter]")).to_have_text("Image 1 of 3")
        expect(add).to_be_disabled()
        expect(page.locator("[data-stage]")).to_have_attribute("data-instance", second[2])  # still on the screen
        shoot(page, shots, "viewer-key-waits-for-the-new-series-1366")
        first_frames.release()
        wait_for(page, first[0], "40/400")
        expect(add).to_be_enabled()
    finally:
        context.close()
