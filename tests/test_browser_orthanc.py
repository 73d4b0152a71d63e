"""An administrator adds a real Orthanc through the pages in Debian's headless
Chromium, syncs it, and sees its studies and a thumbnail served by the app.
Screenshots land in test-artifacts/screenshots/orthanc-*.png."""

from __future__ import annotations

from pathlib import Path

import playwright.sync_api as playwright_api
import pytest

from tests.support import dicomgen
from tests.support.browser import shoot as browser_shot
from tests.support.browser import sign_in
from tests.support.factories import PASSWORD

expect = playwright_api.expect

pytestmark = pytest.mark.browser



def shoot(page, folder: Path, name: str) -> None:
    browser_shot(page, folder, f"orthanc-{name}")


def test_admin_adds_orthanc_syncs_and_sees_studies_with_thumbnails(browser, live, shots, make_user, orthanc):
    make_user("boss", "admin", full_name="Clinic Admin")
    orthanc.upload_many(list(dicomgen.generate_studies(2, 1, rows=32, cols=32)))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    try:
        sign_in(page, live, "boss", PASSWORD)

        page.get_by_role("link", name="Orthanc", exact=True).click()
        expect(page.locator("h1")).to_have_text("Orthanc servers")
        page.get_by_role("link", name="Add server").click()
        page.fill("#label", "Main")
        page.fill("#url", orthanc.url)
        page.fill("#username", orthanc.username)
        page.fill("#password", "not-the-password")
        page.get_by_role("button", name="Check and add").click()
        expect(page.locator("p.error")).to_contain_text("refused the username or password")
        expect(page.locator("#password")).to_have_value("")  # never sent back to the browser
        shoot(page, shots, "01-add-server-refused")

        page.fill("#password", orthanc.password)
        shoot(page, shots, "02-add-server-form")
        page.get_by_role("button", name="Check and add").click()
        expect(page.locator(".flash-success")).to_contain_text("(Orthanc 1.10.1)")
        expect(page.locator("h1")).to_contain_text("Validated")
        shoot(page, shots, "03-server")

        page.get_by_role("button", name="Sync now").click()
        expect(page.locator(".flash-success")).to_contain_text("Main: full sync: 2 studies updated")
        expect(page.get_by_role("link", name="Studies (2)")).to_be_visible()
        shoot(page, shots, "04-synced")

        page.get_by_role("link", name="Studies", exact=True).click()
        rows = page.locator("table.table tbody tr")
        expect(rows).to_have_count(2)
        expect(page.locator("table.table")).to_contain_text("A0-00000-00")
        shoot(page, shots, "05-studies")

        rows.filter(has_text="A0-00000-00").locator("a").first.click()
        expect(page.locator("dl.facts")).to_contain_text("A0-00000-00")
        thumb = page.locator("figure.series img").first
        expect(thumb).to_be_visible()
        src = thumb.get_attribute("src")
        assert src.startswith("/orthanc/servers/") and src.endswith("/preview")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
        assert thumb.evaluate("img => img.naturalWidth") == 32
        explorer = page.get_by_role("link", name="Orthanc Explorer").get_attribute("href")
        assert explorer.startswith(f"{orthanc.url}/app/explorer.html#study?uuid=")
        assert explorer.rsplit("=", 1)[1] in orthanc.get("/studies")
        shoot(page, shots, "06-study")
    finally:
        context.close()
