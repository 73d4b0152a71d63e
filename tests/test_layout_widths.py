"""Nothing wider than the screen, for every role, on a desktop (1366x768) and
a portrait tablet (820x1180), in Debian's Chromium: every page the
navigation reaches and the main detail pages (a patient, a request in each
state, a result, the reporting desk, a study, a user, a test, a worklist
template with its preview, the settings). At 820 the menu is folded behind
"Menu" until pressed (mouse or keyboard), then every link shows.

The same page loads are checked with axe-core (tests/support/axe.py): no
serious or critical WCAG 2 A/AA violation, for every role at both widths,
plus states no link reaches (login, a refused sign-in, a 404, a form with
errors, a flash, the desk's viewer, the order form's suggestions).
Screenshots in test-artifacts/screenshots/layout-*.png and a11y-*.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ghimaging.extensions import db
from ghimaging.worklists.templates import load_shipped
from tests.support import axe
from tests.support.browser import shoot, sign_in
from tests.support.factories import PASSWORD
from tests.test_queues import _report, arrives

VIEWPORTS = {"desktop": {"width": 1366, "height": 768}, "tablet": {"width": 820, "height": 1180}}
ROLES = {"admin": "admin", "doc": "physician", "tech": "technologist", "rad": "radiologist"}


@pytest.fixture
def clinic(app, make_user, create_request, create_patient, catalog, orthanc, orthanc_row):
    users = {name: make_user(name, role, full_name=f"Dr {role.title()} Longname-Example") for name, role in ROLES.items()}
    doc, rad = users["doc"], users["rad"]
    load_shipped()
    patient = create_patient(family_name="Fernández-Oyelaran de la Cruz", given_name="María Guadalupe Ngozi")
    draft = create_request(patient, catalog["chest"], user=doc, physician=doc)
    scheduled = create_request(patient, catalog["abd"], user=doc, physician=doc, submit=True,
                               clinical_context="Right upper quadrant pain after meals. Gallstones? " * 4)
    images = create_request(patient, catalog["chest"], user=doc, physician=doc, submit=True)
    final = create_request(patient, catalog["chest"], user=doc, physician=doc, submit=True)
    arrives(orthanc, orthanc_row, images, instances=2)
    arrives(orthanc, orthanc_row, final, instances=1)
    result = _report(final, rad, final=True)
    db.session.commit()
    from ghimaging.models import OrthancStudy

    study = db.session.scalars(db.select(OrthancStudy)).first()
    return {
        "details": [f"/patients/{patient.id}", f"/patients/{patient.id}/edit", f"/requests/{draft.id}",
                    f"/requests/{scheduled.id}", f"/requests/{images.id}", f"/requests/{final.id}",
                    f"/results/{result.id}", f"/requests/{images.id}/result", f"/orthanc/studies/{study.id}",
                    f"/admin/users/{users['doc'].id}", f"/catalog/tests/{catalog['chest'].id}",
                    "/admin/worklists/templates/new", "/admin/settings/", "/requests/new", "/account"],
        "desk": f"/requests/{images.id}/result",
    }


def _too_wide(page) -> int | None:
    """The page's width when it is wider than the window, else None."""
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return width if width > inner else None


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_no_page_is_wider_than_the_screen_or_fails_axe(browser, live, shots, clinic, viewport):
    """One load of each page serves both checks (the suite's time budget):
    its width, and axe-core's serious and critical WCAG 2 A/AA violations.
    At 820 the menu is checked folded (every page) and unfolded (once per
    role: the menu is the same on every page)."""
    wide: dict[str, int] = {}
    failing: list[str] = []

    def check(label: str, shot: str | None = None) -> None:
        failing.extend(f"{label}: {line}" for line in axe.violations(page))  # waits for the page's load
        if (w := _too_wide(page)) is not None:  # so it is measured styled
            wide[label] = w
        if shot:
            shoot(page, shots, f"{shot}-{viewport}")

    for user in ROLES:
        ctx = browser.new_context(viewport=VIEWPORTS[viewport])
        axe.prepare(ctx)
        page = ctx.new_page()
        try:
            if user == "admin":  # the pages before signing in, once per width
                page.goto(live + "/login")
                check("login", shot="a11y-login")
                page.fill("#username", "admin")
                page.fill("#password", "not the password")
                page.get_by_role("button", name="Sign in").click()
                expect(page.locator(".flash").first).to_be_visible()
                check("login refused")
            sign_in(page, live, user, PASSWORD)
            if viewport == "tablet":
                page.get_by_role("button", name="Menu").click()
                expect(page.locator("#mainnav")).to_be_visible()
                check(f"{user} menu unfolded")
                page.get_by_role("button", name="Menu").click()
            nav = page.eval_on_selector_all("#mainnav a", "els => els.map(a => a.getAttribute('href'))")
            assert len(nav) >= 4, nav
            for path in dict.fromkeys([p.split("#")[0] for p in nav] + clinic["details"]):
                page.goto(live + path)
                shot = user == "doc" and path in (clinic["details"][5], "/orthanc/studies")
                check(f"{user} {path}", shot=f"a11y-{path.strip('/').replace('/', '-')}" if shot else None)
            _states(page, live, clinic, user, check)
            if user == "admin":
                page.goto(live + "/admin/worklists/")
                page.locator("table.table a[href*='/templates/']").first.click()
                page.get_by_role("button", name="Preview").click()
                expect(page.locator("pre.dump")).to_be_visible()
                check("admin worklist template preview")
                shoot(page, shots, f"layout-template-preview-{viewport}")
        finally:
            ctx.close()
    assert not wide, f"wider than {VIEWPORTS[viewport]['width']} px: {wide}"
    assert not failing, f"axe-core {axe.VERSION}, serious/critical at {viewport}:\n" + "\n".join(failing)


@pytest.mark.parametrize("accept, lang", [("es-BO,es;q=0.9", "es"), ("en-GB", "en")])
def test_the_page_says_its_language(browser, live, make_user, accept, lang):
    """<html lang> is the language the page is shown in (a screen reader
    reads a Spanish page with Spanish rules), signed out and signed in."""
    make_user("doc", "physician")
    db.session.commit()
    ctx = browser.new_context(viewport=VIEWPORTS["desktop"], extra_http_headers={"Accept-Language": accept})
    page = ctx.new_page()
    try:
        page.goto(live + "/login")
        expect(page.locator("html")).to_have_attribute("lang", lang)
        page.fill("#username", "doc")
        page.fill("#password", PASSWORD)
        page.locator("form button[type=submit]").click()
        expect(page.locator(".topbar")).to_be_visible()
        page.goto(live + "/patients/")
        expect(page.locator("html")).to_have_attribute("lang", lang)
    finally:
        ctx.close()


def _states(page, live, clinic, user, check) -> None:
    """Page states a link does not reach: an error page, a form showing its
    errors, a flash message, the reporting desk with its viewer, the order
    form with the patient picker's suggestions."""
    patient = clinic["details"][0]
    if user == "admin":
        page.goto(live + "/no-such-page")
        check("admin 404", shot="a11y-404")
    elif user == "doc":
        page.goto(live + "/patients/new")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("[aria-invalid=true]").first).to_be_visible()
        # a field's error is read with the field (aria-describedby), not only seen below it
        expect(page.get_by_label("Family name")).to_have_accessible_description(re.compile(r"\w"))
        page.locator("[aria-invalid=true]").first.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # the focus ring as the keyboard shows it
        check("doc patient form with errors", shot="a11y-patient-form-errors")
        page.goto(live + patient + "/edit")
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".flash").first).to_be_visible()
        check("doc flash after saving a patient")
        page.goto(live + "/requests/new")
        page.locator("#patient").press_sequentially("Fern")
        expect(page.locator("#patient-options option").first).to_be_attached()
        check("doc order form with suggestions", shot="a11y-order-suggestions")
    elif user == "rad":
        page.goto(live + clinic["desk"])
        expect(page.locator("[data-viewer] select[data-series]")).to_be_visible()
        check("rad desk with the viewer", shot="a11y-desk")


def test_the_tablet_menu_folds_behind_its_button(browser, live, shots, clinic):
    ctx = browser.new_context(viewport=VIEWPORTS["tablet"])
    page = ctx.new_page()
    try:
        sign_in(page, live, "admin", PASSWORD)
        menu = page.get_by_role("button", name="Menu")
        links = page.locator("#mainnav a")
        assert links.count() >= 11, links.count()  # an administrator's menu
        expect(menu).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(page.locator("#mainnav")).to_be_hidden()
        assert _too_wide(page) is None
        # Sign out on the blue bar, inside the screen (it sat past the bar's
        # right end, light text on the grey page, before) and readable there
        out, bar = page.locator(".topbar .signout button").bounding_box(), page.locator(".topbar").bounding_box()
        assert out and bar and out["x"] + out["width"] <= bar["x"] + bar["width"] <= VIEWPORTS["tablet"]["width"], out
        assert page.evaluate(_CONTRAST, ".topbar .signout button") >= 4.5
        shoot(page, shots, "layout-admin-menu-closed-820")
        menu.focus()
        page.keyboard.press("Enter")  # by keyboard, as by mouse
        expect(menu).to_have_attribute("aria-expanded", "true")
        for i in range(links.count()):
            expect(links.nth(i)).to_be_visible()
            box = links.nth(i).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS["tablet"]["width"], box
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        assert _too_wide(page) is None
        shoot(page, shots, "layout-admin-menu-open-820")
        page.keyboard.press("Space")  # and closed again
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(page.locator("#mainnav")).to_be_hidden()
        menu.click()
        links.first.focus()
        page.keyboard.press("Escape")  # folds it from inside, focus back on the button
        expect(page.locator("#mainnav")).to_be_hidden()
        expect(menu).to_be_focused()
    finally:
        ctx.close()


def test_the_desktop_menu_is_one_line_and_sign_out_is_readable(browser, live, shots, clinic):
    ctx = browser.new_context(viewport=VIEWPORTS["desktop"])
    page = ctx.new_page()
    try:
        sign_in(page, live, "admin", PASSWORD)
        shoot(page, shots, "layout-admin-1366")
        expect(page.get_by_role("button", name="Menu")).to_be_hidden()
        tops = page.eval_on_selector_all("#mainnav a, .topbar button:not([data-toggle-nav])",
                                         "els => els.map(e => { const r = e.getBoundingClientRect(); return r.top + r.height / 2; })")
        assert max(tops) - min(tops) < 4, tops  # one row: the same middle line
        ratio = page.evaluate(_CONTRAST, ".topbar .signout button")
        assert ratio >= 4.5, ratio
    finally:
        ctx.close()


# WCAG 2 contrast of an element's text against the first opaque background
# behind it (its own or an ancestor's).
_CONTRAST = """sel => {
  const el = document.querySelector(sel);
  const rgb = s => s.match(/[\\d.]+/g).map(Number);
  const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  let bg = null;
  for (let e = el; e && !bg; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] === 1) bg = c;
    if (c.length === 4 && c[3] === 0) continue;
  }
  const fg = lum(rgb(getComputedStyle(el).color)), b = lum(bg || [255, 255, 255]);
  return (Math.max(fg, b) + 0.05) / (Math.min(fg, b) + 0.05);
}"""


@pytest.fixture
def mwl(app, tmp_path):
    """A real Orthanc with the worklist plugin reading the app's folder."""
    from pathlib import Path

    from tests.support.orthanc import OrthancServer

    server = OrthancServer(tmp_path / "orthanc-mwl", worklists=True, worklist_dir=Path(app.config["WORKLIST_DIR"]))
    server.start()
    yield server
    server.kill()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_test_worklist_table_scrolls_inside_its_card(browser, live, shots, mwl, make_user, catalog,
                                                         create_patient, create_request, viewport):
    from ghimaging.orthanc import servers

    make_user("admin", "admin")
    servers.add_server(label="Main", url=mwl.url, username=mwl.username, password=mwl.password)
    for n in range(3):
        patient = create_patient(family_name=f"Fernández-Oyelaran de la Cruz {n}", given_name="María Guadalupe")
        create_request(patient, catalog["chest"], submit=True)
    db.session.commit()
    ctx = browser.new_context(viewport=VIEWPORTS[viewport])
    page = ctx.new_page()
    try:
        sign_in(page, live, "admin", PASSWORD)
        page.goto(live + "/admin/worklists/")
        page.get_by_role("button", name="Test worklist").click()
        expect(page.locator("#selftest-items td").first).to_be_visible()
        assert _too_wide(page) is None
        last = page.locator("#selftest-items th").last
        last.scroll_into_view_if_needed()  # reachable by scrolling the table, never cut off
        box = last.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS[viewport]["width"], box
        clipped = page.evaluate("""() => { const out = [];
            for (let e = document.querySelector('#selftest-items table'); e; e = e.parentElement) {
              const s = getComputedStyle(e).overflowX;
              if (s === 'hidden' || s === 'clip') out.push(e.tagName + '.' + e.className);
            } return out; }""")
        assert not clipped, clipped
        assert not axe.violations(page)
        shoot(page, shots, f"layout-test-worklist-{viewport}")
    finally:
        ctx.close()


@pytest.mark.parametrize("accept", ["de-DE,de;q=0.9", "es-BO,es;q=0.9"])
def test_translated_pages_fit_the_tablet(browser, live, shots, clinic, accept):
    """German and Spanish words are longer than English ones: every page an
    administrator and a physician reach still fits 820 px (the menu folded
    and unfolded), and the page really is in that language."""
    lang = accept[:2]
    wide: dict[str, int] = {}
    for user in ("admin", "doc"):
        ctx = browser.new_context(viewport=VIEWPORTS["tablet"], extra_http_headers={"Accept-Language": accept})
        page = ctx.new_page()
        try:
            page.goto(live + "/login")
            expect(page.locator("html")).to_have_attribute("lang", lang)
            page.fill("#username", user)
            page.fill("#password", PASSWORD)
            page.locator("form button[type=submit]").click()
            expect(page.locator(".topbar")).to_be_visible()
            assert "/login" not in page.url
            page.locator("button[aria-controls=mainnav]").click()
            expect(page.locator("#mainnav")).to_be_visible()
            if (w := _too_wide(page)) is not None:
                wide[f"{user} menu unfolded"] = w
            nav = page.eval_on_selector_all("#mainnav a", "els => els.map(a => a.getAttribute('href'))")
            for path in dict.fromkeys([p.split("#")[0] for p in nav] + clinic["details"]):
                page.goto(live + path)
                if (w := _too_wide(page)) is not None:
                    wide[f"{user} {path}"] = w
                if user == "doc" and path in ("/", clinic["details"][4], "/requests/new"):
                    shoot(page, shots, f"layout-{lang}-{path.strip('/').replace('/', '-') or 'start'}-820")
        finally:
            ctx.close()
    assert not wide, f"wider than 820 px in {lang}: {wide}"
