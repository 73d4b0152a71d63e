"""A password someone else chose must be replaced at the next sign-in
(issue 11: the installer's first administrator; issue 13: an
administrator's reset): until then the browser reaches only the page to
choose one and signing out, and the person's API tokens get a 403."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from ghimaging.auth import gate, service
from ghimaging.extensions import db
from ghimaging.models import Role, User
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient

OWN = "Only-mine-2026!"
CHOOSE = "/account/password"


@pytest.fixture
def first_admin(app) -> User:
    """As ``ghimaging init --create-admin`` makes it: a printed password."""
    user = service.create_user("admin", PASSWORD, [Role.ADMIN], full_name="Administrator", must_change_password=True)
    db.session.commit()
    return user


def sign_in(app, username: str, password: str = PASSWORD) -> CsrfClient:
    c = CsrfClient(app.test_client())
    r = c.post("/login", {"username": username, "password": password}, token_from="/login")
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return c


def choose(c: CsrfClient, new: str, *, current: str = PASSWORD, confirm: str | None = None, next: str = ""):
    path = CHOOSE + (f"?next={next}" if next else "")
    return c.post(path, {"current_password": current, "new_password": new,
                         "confirm": new if confirm is None else confirm}, token_from=CHOOSE)


def field_errors(resp, name: str) -> list[str]:
    for chunk in re.findall(r'<div class="field [^"]*has-error[^"]*">(.*?)</div>', resp.get_data(as_text=True), re.S):
        if f'name="{name}"' in chunk:
            return [html.unescape(m) for m in re.findall(r'<p class="error">(.*?)</p>', chunk)]
    return []


def fresh(username: str) -> User:
    db.session.expire_all()
    user = db.session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


def sent_to_choose(resp) -> bool:
    return resp.status_code == 302 and urlsplit(resp.location).path == CHOOSE


PAGES = ["/", "/patients/", "/requests", "/admin/users", "/account", "/admin/settings/", "/orthanc/studies"]


def test_the_first_admin_is_sent_to_choose_a_password_from_every_page(app, first_admin):
    c = sign_in(app, "admin")
    got = {p: sent_to_choose(c.get(p)) for p in PAGES}
    assert got == dict.fromkeys(PAGES, True)
    page = c.get(CHOOSE)
    assert page.status_code == 200
    assert html.escape(gate.MESSAGE, quote=False) in page.get_data(as_text=True)


def test_a_post_elsewhere_is_refused_and_changes_nothing(app, first_admin):
    c = sign_in(app, "admin")
    r = c.post("/admin/users/new", {"username": "mallory", "password": "Whatever-123", "roles": ["admin"],
                                    "active": "y"}, token_from=CHOOSE)
    assert sent_to_choose(r)
    assert service.find_user("mallory") is None


def test_signing_out_static_files_and_the_health_check_stay_reachable(app, first_admin):
    c = sign_in(app, "admin")
    assert c.get("/static/css/app.css").status_code == 200
    # A monitor's check in the same browser still gets the health answer, not the choose page.
    health = c.get("/healthz")
    assert health.status_code in (200, 503) and health.is_json and "database" in health.get_json()["checks"]
    r = c.post("/logout", token_from=CHOOSE)
    assert urlsplit(r.location).path == "/login"
    assert urlsplit(c.get("/").location).path == "/login"


def test_an_api_token_made_before_is_no_back_door(app, first_admin):
    token = service.create_token(first_admin, "made by the CLI")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/me", "/api/v1/patients"):
        r = client.get(path, headers=headers)
        assert (r.status_code, r.get_json()["error"]) == (403, "password_change_required"), path
    r = client.post("/api/v1/patients", json={"puid": "P1", "family_name": "Doe", "given_name": "Jo"},
                    headers=headers)
    assert (r.status_code, r.get_json()["error"]) == (403, "password_change_required")
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer ghi_not-a-token"}).status_code == 401
    c = sign_in(app, "admin")
    assert choose(c, OWN).status_code == 302
    assert client.get("/api/v1/me", headers=headers).status_code == 200


def test_after_choosing_everything_works_and_the_given_password_is_gone(app, first_admin):
    c = sign_in(app, "admin")
    r = choose(c, OWN, next="/admin/users")
    assert r.status_code == 302 and r.location == "/admin/users"
    assert not fresh("admin").must_change_password
    assert {p: c.get(p).status_code for p in PAGES} == dict.fromkeys(PAGES, 200)
    assert c.get(CHOOSE).location == "/account"  # nothing left to choose
    assert fresh("admin").check_password(OWN) and not fresh("admin").check_password(PASSWORD)


def test_the_page_asked_for_is_reached_after_choosing(app, first_admin):
    c = sign_in(app, "admin")
    r = c.get("/admin/users?page=1")
    assert parse_qs(urlsplit(r.location).query) == {"next": ["/admin/users?page=1"]}
    assert choose(c, OWN, next="%2Fadmin%2Fusers%3Fpage%3D1").location == "/admin/users?page=1"


def test_keeping_the_given_password_is_refused(app, first_admin):
    c = sign_in(app, "admin")
    r = choose(c, PASSWORD)
    assert r.status_code == 400
    assert field_errors(r, "new_password") == [service.SAME_PASSWORD]
    assert fresh("admin").must_change_password
    assert sent_to_choose(c.get("/"))


@pytest.mark.parametrize("case", ["wrong current", "weak", "mismatch"])
def test_the_usual_password_rules_apply(app, first_admin, case):
    c = sign_in(app, "admin")
    r = {"wrong current": lambda: choose(c, OWN, current="not-it-at-all"),
         "weak": lambda: choose(c, "aaaaaaaaaa"),
         "mismatch": lambda: choose(c, OWN, confirm=OWN + "x")}[case]()
    assert r.status_code == 400
    assert fresh("admin").must_change_password and fresh("admin").check_password(PASSWORD)


def test_an_admins_reset_forces_a_change_but_not_their_own(app, first_admin, make_user):
    make_user("alice", "physician")
    c = sign_in(app, "admin")
    choose(c, OWN)
    assert c.post(f"/admin/users/{service.find_user('alice').id}/password",
                  {"reset-new_password": "Given-by-admin-1"}, token_from="/admin/users").status_code == 302
    assert fresh("alice").must_change_password
    alice = sign_in(app, "alice", "Given-by-admin-1")
    assert sent_to_choose(alice.get("/requests"))
    assert choose(alice, OWN, current="Given-by-admin-1").status_code == 302
    assert alice.get("/requests").status_code == 200
    assert c.post(f"/admin/users/{first_admin.id}/password", {"reset-new_password": "Admin-chose-this-2"},
                  token_from="/admin/users").status_code == 302
    assert not fresh("admin").must_change_password
    assert c.get("/admin/users").status_code == 200


def test_a_user_an_admin_creates_must_choose_their_own(app, first_admin):
    c = sign_in(app, "admin")
    choose(c, OWN)
    r = c.post("/admin/users/new", {"username": "carol", "roles": ["radiologist"], "active": "y",
                                    "password": "Admin-chose-this-3"}, token_from="/admin/users/new")
    assert r.status_code == 302
    assert fresh("carol").must_change_password
    carol = sign_in(app, "carol", "Admin-chose-this-3")
    assert sent_to_choose(carol.get("/"))


def test_the_users_page_shows_who_still_has_a_one_time_password(app, first_admin, make_user):
    make_user("alice", "physician")
    c = sign_in(app, "admin")
    choose(c, OWN)
    c.post(f"/admin/users/{service.find_user('alice').id}/password", {"reset-new_password": "Given-by-admin-1"},
           token_from="/admin/users")
    rows = dict(re.findall(r'<td><a href="[^"]+">(\w+)</a></td>(.*?)</tr>', c.get("/admin/users").get_data(as_text=True),
                           re.S))
    assert {name: "One-time password" in row for name, row in rows.items()} == {"admin": False, "alice": True}


def test_changing_ones_own_password_clears_the_flag(app, make_user):
    """However it was set: the account page's change is a password the
    person chose too."""
    user = make_user("bob", "technologist")
    user.must_change_password = True
    db.session.commit()
    service.change_own_password(user, PASSWORD, OWN)
    db.session.commit()
    assert not fresh("bob").must_change_password


def test_the_choose_page_needs_a_sign_in(app):
    r = app.test_client().get(CHOOSE)
    assert urlsplit(r.location).path == "/login"


@pytest.mark.browser
def test_in_chromium_the_first_admin_chooses_a_password_and_reaches_the_start_page(browser, live, shots, first_admin):
    from playwright.sync_api import expect

    from tests.support.browser import shoot
    from tests.support.browser import sign_in as browser_sign_in

    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-GB")
    page = context.new_page()
    try:
        browser_sign_in(page, live, "admin", PASSWORD)
        assert urlsplit(page.url).path == CHOOSE
        expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
        expect(page.get_by_text(str(gate.MESSAGE))).to_be_visible()
        shoot(page, shots, "first-password-1366")
        page.set_viewport_size({"width": 820, "height": 1180})
        # The page fits a tablet: the menu is hidden until a password is
        # chosen (every link would lead back here), Sign out stays.
        assert page.evaluate("document.querySelector('main .card').getBoundingClientRect().right <= innerWidth")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        shoot(page, shots, "first-password-820")
        page.goto(live + "/admin/users")  # any other page sends the browser back
        assert urlsplit(page.url).path == CHOOSE
        page.fill("#current_password", PASSWORD)
        page.fill("#new_password", PASSWORD)
        page.fill("#confirm", PASSWORD)
        page.get_by_role("button", name="Save my password").click()
        expect(page.get_by_text(str(service.SAME_PASSWORD))).to_be_visible()
        page.fill("#current_password", PASSWORD)
        page.fill("#new_password", OWN)
        page.fill("#confirm", OWN)
        page.get_by_role("button", name="Save my password").click()
        expect(page.get_by_text("Your password is changed")).to_be_visible()
        assert urlsplit(page.url).path == "/admin/users"
        page.goto(live + "/")
        assert urlsplit(page.url).path == "/"
        page.get_by_role("button", name="Menu").click()  # a tablet's menu is folded behind "Menu"
        expect(page.get_by_role("link", name="Users")).to_be_visible()
    finally:
        context.close()


def test_the_cli_first_admin_and_created_users_must_choose_their_own(app):
    """``init --create-admin`` prints a password; ``create-user`` takes one
    an administrator typed: both are someone else's choice."""
    runner = app.test_cli_runner()
    made = runner.invoke(args=["init", "--create-admin"])
    assert made.exit_code == 0, made.output
    printed = re.search(r"username admin\s+password (\S+)", made.output).group(1)
    assert fresh("admin").must_change_password
    assert sent_to_choose(sign_in(app, "admin", printed).get("/"))
    added = runner.invoke(args=["create-user", "dora", "--role", "physician", "--password-stdin"],
                          input="Typed-by-admin-4\n")
    assert added.exit_code == 0, added.output
    assert fresh("dora").must_change_password
