"""The reporting desk end to end in Debian's headless Chromium against a
real Orthanc 1.10.1: a radiologist opens the first item of "To report",
scrolls through a multi-instance CT series in the viewer (the shown
instance changes), changes the window, inserts a report template, saves a
preliminary result, adds a key image of what is shown, finalises; the item
leaves the queue. Then the same on a tablet (820x1180, touch events). The
draft is kept while typing and restored on reopening. Screenshots land in
test-artifacts/screenshots/ (1366x768 and 820x1180)."""

from __future__ import annotations

from datetime import date

import playwright.sync_api as playwright_api
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from ghimaging.catalog import report_templates
from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, ReportDraft, Result
from ghimaging.orthanc import sync
from tests.support import dicomgen
from tests.support.browser import shoot
from tests.support.browser import sign_in as browser_sign_in
from tests.support.factories import PASSWORD

expect = playwright_api.expect

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}
NORMAL = "Lungs are clear. Heart size is normal. No pleural effusion."
INSTANCES = 6


@pytest.fixture
def app_config():
    return {"ORTHANC_PREVIEW_DEADLINE": 5, "ORTHANC_PAGE_DEADLINE": 5}


@pytest.fixture
def clinic(app, orthanc, orthanc_row, make_user, create_patient, create_request, catalog):
    """A radiologist, a physician's submitted request with a 6-instance CT
    series in Orthanc (mirrored and linked), and two templates for its test."""
    make_user("rad", "radiologist", full_name="Dr Rita Rad")
    doc = make_user("doc", "physician", full_name="Dr Otto Order")
    patient = create_patient(family_name="Weiß", given_name="Günther", sex="M", birth_date=date(1958, 3, 14))
    patient.alerts = "Allergic to iodinated contrast"
    db.session.commit()
    req = create_request(patient, submit=True, user=doc, physician=doc,
                         clinical_context="Cough for three weeks; pneumonia?")
    series_uid = generate_uid()
    for i in range(INSTANCES):
        ds = dicomgen.make_instance(patient.puid, "Weiss^Guenther", req.study_instance_uid, series_uid,
                                    accession=req.accession_number, modality="CT", rows=64, cols=64,
                                    instance_number=i + 1, series_description="Chest axial",
                                    extra={"RescaleIntercept": -1024, "RescaleSlope": 1,
                                           "WindowCenter": 40, "WindowWidth": 400})
        orthanc.upload(dicomgen.to_bytes(ds))
    summary = sync.run(orthanc_row.id, mode="full")
    assert summary.error == "", summary.error
    report_templates.save(None, req.test, name="Normal chest", text=NORMAL)
    report_templates.save(None, req.test, name="Normal chest, child", text="Normal for age.")
    db.session.commit()
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    assert req.images_available
    return req


def shown(page) -> dict[str, str]:
    stage = page.locator("[data-stage]")
    return {"instance": stage.get_attribute("data-instance") or "", "window": stage.get_attribute("data-window") or "",
            "counter": page.locator("[data-counter]").inner_text()}


def wait_image(page, counter: str) -> None:
    """Until the counter says ``counter`` and that image is the one on the screen."""
    expect(page.locator("[data-counter]")).to_have_text(counter)
    number = int(counter.split()[1])
    page.wait_for_function("(n) => { const v = document.querySelector('[data-viewer]').viewer;"
                           " const i = document.querySelector('[data-image]');"
                           " return v && v.shown && v.shown.index === n - 1 && !v.loading && !v.wanted"
                           " && i.complete && i.naturalWidth > 0; }", arg=number)


def open_first_to_report(page, base: str, req) -> None:
    """The radiologist's start page, "To report": the first row is this request; one click to the desk."""
    page.goto(base + "/")
    rows = page.locator("#to-report tbody tr")
    expect(rows.first).to_contain_text(req.patient.full_name)
    expect(rows.first.get_by_role("link", name="Report")).to_have_attribute("href", f"/requests/{req.id}/result")
    rows.first.get_by_role("link", name="Report").click()
    expect(page).to_have_url(f"{base}/requests/{req.id}/result")


def sections_with(page, base: str, req) -> list[str]:
    """The radiologist's start page sections that list the request."""
    page.goto(base + "/")
    expect(page.locator("#to-report")).to_be_visible()
    return [name for name in ("to-report", "preliminary-mine", "preliminary-others", "finalised-today")
            if req.patient.full_name in page.locator(f"#{name}").inner_text()]


def screens(page, folder, name: str) -> None:
    """The whole page, and the screen as the radiologist sees it (sticky bars in place)."""
    shoot(page, folder, name)
    page.screenshot(path=str(folder / f"{name}-screen.png"))


def no_sideways_scroll(page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways: {width}"


def draft_of(req) -> str | None:
    db.session.expire_all()
    d = db.session.scalar(select(ReportDraft).where(ReportDraft.request_id == req.id))
    return d.text if d else None


def test_desk_on_a_desktop_from_queue_to_final(browser, live, shots, clinic):
    req = clinic
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    page = context.new_page()
    asked: list[str] = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    try:
        browser_sign_in(page, live, "rad", PASSWORD)
        open_first_to_report(page, live, req)
        expect(page.locator(".desk-alerts")).to_contain_text("Allergic to iodinated contrast")
        expect(page.locator(".desk-question")).to_contain_text("Cough for three weeks; pneumonia?")
        wait_image(page, f"Image 1 of {INSTANCES}")

        # Images beside the editor, nothing wider than the screen.
        images = page.locator(".desk-images").bounding_box()
        editor = page.locator(".desk-editor").bounding_box()
        assert images["x"] + images["width"] <= editor["x"] and abs(images["y"] - editor["y"]) < 5
        no_sideways_scroll(page)

        # Scroll through the series: the wheel, then a key.
        first = shown(page)
        page.locator("[data-stage]").hover()
        page.mouse.wheel(0, 120)
        wait_image(page, f"Image 2 of {INSTANCES}")
        page.locator("[data-stage]").press("ArrowDown")
        wait_image(page, f"Image 3 of {INSTANCES}")
        third = shown(page)
        assert third["instance"] != first["instance"]

        # Type, insert a template at the cursor, and see the draft kept.
        report = page.locator("textarea[name=report]")
        report.click()
        report.press_sequentially("Comparison: none.", delay=10)
        page.select_option("[data-template-pick]", label="Normal chest")
        page.locator("[data-template-insert]").click()
        expect(report).to_have_value("Comparison: none.\n" + NORMAL)
        expect(page.locator("[data-autosave-status]")).to_contain_text("Draft kept")
        assert draft_of(req) == "Comparison: none.\n" + NORMAL
        screens(page, shots, "desk-01-new-1366x768")

        # Leaving the page at once (long before the next autosave) still
        # keeps what was typed; reopened, the draft comes back with a notice.
        report.press_sequentially(" Signed.", delay=10)
        page.goto(f"{live}/requests/{req.id}")
        wanted = "Comparison: none.\n" + NORMAL + " Signed."
        for _ in range(100):
            if draft_of(req) == wanted:
                break
            page.wait_for_timeout(100)
        assert draft_of(req) == wanted
        page.goto(f"{live}/requests/{req.id}/result")
        expect(page.locator("[data-restored]")).to_contain_text("Your unsaved draft")
        expect(report).to_have_value(wanted)

        page.get_by_role("button", name="Save as preliminary").click()
        expect(page.locator(".flash-success")).to_contain_text("Preliminary result saved")
        assert draft_of(req) is None
        assert sections_with(page, live, req) == ["preliminary-mine"]
        page.go_back()
        page.get_by_role("link", name="Edit").click()
        wait_image(page, f"Image 1 of {INSTANCES}")

        # Scroll to image 4, change the window, add it as a key image.
        page.locator("[data-slider]").fill("4")
        wait_image(page, f"Image 4 of {INSTANCES}")
        before = shown(page)
        page.get_by_role("button", name="Window", exact=True).click()
        box = page.locator("[data-stage]").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 80, cy + 40, steps=4)
        page.mouse.up()
        page.wait_for_function("(w) => { const v = document.querySelector('[data-viewer]').viewer;"
                               " return v.shown && v.shown.window && v.shown.window.join('/') !== w"
                               " && !v.loading && !v.wanted; }", arg=before["window"])
        after = shown(page)
        assert after["window"] != before["window"] and after["instance"] == before["instance"]
        page.fill("[data-caption]", "Right lower lobe")
        page.get_by_role("button", name="Add as key image").click()
        expect(page.locator("[data-key-status]")).to_contain_text("Key image added")
        db.session.expire_all()
        result = db.session.scalar(select(Result))
        assert [i.caption for i in result.images] == ["Right lower lobe"]
        screens(page, shots, "desk-02-edit-1366x768")

        assert asked == []
        page.get_by_role("button", name="Save and finalise").click()
        expect(page.locator(".flash-success")).to_contain_text("Result finalised")
        assert asked == ["Finalise this report? It becomes read-only; later changes are addenda."]
        db.session.expire_all()
        result = db.session.scalar(select(Result))
        assert result.is_final and result.request.state == "done"
        assert [i.caption for i in result.images] == ["Right lower lobe"], "the key image stays"
        assert sections_with(page, live, req) == ["finalised-today"], "the item left the queue"
    finally:
        context.close()


def touch_swipe(page, selector: str, dy: int) -> None:
    """A one-finger vertical swipe as touch events (Chromium's own, through CDP)."""
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for i in range(1, 11):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y + dy * i / 10}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_desk_on_a_tablet_with_touch(browser, live, shots, clinic):
    req = clinic
    context = browser.new_context(viewport=TABLET, locale="en-GB", has_touch=True, is_mobile=True,
                                  device_scale_factor=1)
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    try:
        browser_sign_in(page, live, "rad", PASSWORD)
        open_first_to_report(page, live, req)
        wait_image(page, f"Image 1 of {INSTANCES}")

        # One column: the images above the editor; no sideways scrolling.
        images = page.locator(".desk-images").bounding_box()
        editor = page.locator(".desk-editor").bounding_box()
        assert images["y"] + images["height"] <= editor["y"] + 1
        no_sideways_scroll(page)

        first = shown(page)
        touch_swipe(page, "[data-stage]", 300)
        page.wait_for_function("(i) => document.querySelector('[data-stage]').getAttribute('data-instance') !== i",
                               arg=first["instance"])
        assert shown(page)["counter"] != f"Image 1 of {INSTANCES}"

        page.locator("textarea[name=report]").tap()
        page.select_option("[data-template-pick]", label="Normal chest")
        page.locator("[data-template-insert]").tap()
        expect(page.locator("textarea[name=report]")).to_have_value(NORMAL)
        screens(page, shots, "desk-03-tablet-820x1180")

        page.get_by_role("button", name="Save and finalise").tap()
        expect(page.locator(".flash-success")).to_contain_text("Result finalised")
        db.session.expire_all()
        assert db.session.scalar(select(Result)).is_final
        assert sections_with(page, live, req) == ["finalised-today"], "the item left the queue"
    finally:
        context.close()


def test_a_report_saved_by_another_radiologist_is_never_overwritten_by_an_open_desk(browser, live, shots, clinic,
                                                                                     make_user):
    """Rita types on the desk; Bea saves a result meanwhile. Rita's autosave
    is refused (said under the editor), her Save is refused with her text
    kept and Bea's report shown; reopened, the desk shows Bea's report and
    Rita's older draft only to read."""
    from ghimaging.imaging import reporting

    req = clinic
    bea = make_user("radb", "radiologist", full_name="Dr Bea Second")
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    page = context.new_page()
    try:
        browser_sign_in(page, live, "rad", PASSWORD)
        page.goto(f"{live}/requests/{req.id}/result")
        page.locator("textarea[name=report]").fill("A: old draft, no findings")
        page.locator("textarea[name=report]").dispatch_event("input")
        expect(page.locator("[data-autosave-status]")).to_contain_text("Draft kept at")

        reporting.create_result(db.session.get(ImagingRequest, req.id), bea, radiologist=bea,
                                result_date=date.today(), report="B: FRACTURE of left radius")
        db.session.commit()

        page.locator("textarea[name=report]").fill("A: old draft, no findings. Typed on.")
        page.locator("textarea[name=report]").dispatch_event("input")
        expect(page.locator("[data-autosave-status]")).to_contain_text("saved by Dr Bea Second after this page")
        page.get_by_role("button", name="Save as preliminary").click()
        expect(page.locator("[data-conflict]")).to_contain_text("B: FRACTURE of left radius")
        expect(page.locator("textarea[name=report]")).to_have_value("A: old draft, no findings. Typed on.")
        screens(page, shots, "desk-10-saved-by-another-1366x768")
        db.session.expire_all()
        assert db.session.scalar(select(Result)).report == "B: FRACTURE of left radius"

        for viewport, name in ((DESKTOP, "1366x768"), (TABLET, "820x1180")):
            page.set_viewport_size(viewport)
            page.goto(f"{live}/results/{db.session.scalar(select(Result)).id}/edit")
            expect(page.locator("textarea[name=report]")).to_have_value("B: FRACTURE of left radius")
            stale = page.locator("[data-stale-draft]")
            expect(stale).to_contain_text("written before Dr Bea Second's save")
            stale.locator("summary").click()
            expect(stale.locator("textarea")).to_have_value("A: old draft, no findings")
            no_sideways_scroll(page)
            screens(page, shots, f"desk-11-older-draft-{name}")
        # Discarded: the notice goes, the saved report stays, the draft is gone.
        page.locator("[data-stale-draft] [data-discard-draft]").click()
        expect(page.locator("[data-stale-draft]")).to_have_count(0)
        expect(page.locator("textarea[name=report]")).to_have_value("B: FRACTURE of left radius")
        assert draft_of(req) is None
    finally:
        context.close()
