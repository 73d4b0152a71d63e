"""Signing in and out, the ``next`` redirect, CSRF, the session cookie and
changing one's own password, through the pages (throttling: test_throttle.py;
server-side sessions: test_sessions.py)."""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import User
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient

NEW_PASSWORD = "An0ther-long-secret"


@pytest.fixture
def alice(make_user):
    return make_user("alice", "physician")


@pytest.fixture
def anon(app) -> CsrfClient:
    return CsrfClient(app.test_client())


def sign_in(c: CsrfClient, username: str, password: str = PASSWORD, next: str | None = None, **extra):
    path = "/login" if next is None else f"/login?next={quote(next, safe='')}"
    return c.post(path, {"username": username, "password": password, **extra}, token_from="/login")


def flashes(resp, category: str = "error") -> list[str]:
    return [html.unescape(m) for m in
            re.findall(rf'<div class="flash flash-{category}">(.*?)</div>', resp.get_data(as_text=True))]


def field_errors(resp, name: str) -> list[str]:
    """The error messages shown under the form field called ``name``."""
    for chunk in re.findall(r'<div class="field [^"]*has-error[^"]*">(.*?)</div>', resp.get_data(as_text=True), re.S):
        if f'name="{name}"' in chunk:
            return [html.unescape(m) for m in re.findall(r'<p class="error">(.*?)</p>', chunk)]
    return []


def is_signed_in(c: CsrfClient) -> bool:
    r = c.get("/account")
    if r.status_code == 302:
        assert urlsplit(r.location).path == "/login"
        return False
    assert r.status_code == 200
    return True


def reload(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


# -- signing in ---------------------------------------------------------------

def test_right_password_signs_in_and_goes_to_the_dashboard(anon, alice):
    r = sign_in(anon, "alice")
    assert r.status_code == 302
    assert urlsplit(r.location).path == "/"
    page = anon.get("/")
    assert page.status_code == 200
    assert "Alice" in page.get_data(as_text=True)


def test_username_is_matched_without_regard_to_case(anon, alice):
    assert sign_in(anon, "ALICE").status_code == 302
    assert is_signed_in(anon)


SAFE_NEXT = ["/patients/?q=M%C3%BCller", "/requests?state=done&page=2", "/account"]
UNSAFE_NEXT = [
    "https://evil.com",
    "http://evil.com/login",
    "//evil.com",
    "///evil.com",
    "\\\\evil.com",
    "/\\evil.com",
    "\\/evil.com",
    "/\t/evil.com",
    "/\n/evil.com",
    " //evil.com",
    "evil.com",
    "javascript:alert(1)",
    "https:/evil.com",
    "https:evil.com",
]


def test_a_safe_relative_next_is_followed(app, alice):
    got = {t: sign_in(CsrfClient(app.test_client()), "alice", next=t).location for t in SAFE_NEXT}
    assert got == {t: t for t in SAFE_NEXT}


def test_an_unsafe_next_is_refused_for_the_dashboard(app, alice):
    got = {t: sign_in(CsrfClient(app.test_client()), "alice", next=t) for t in UNSAFE_NEXT}
    assert {t: (r.status_code, r.location) for t, r in got.items()} == {t: (302, "/") for t in UNSAFE_NEXT}


def test_an_unsafe_next_is_refused_when_already_signed_in(login, alice):
    c = login("alice")
    targets = ["//evil.com", "https://evil.com", "/\\evil.com"]
    got = {t: c.get(f"/login?next={quote(t, safe='')}").location for t in targets}
    assert got == {t: "/" for t in targets}


def test_wrong_password_and_unknown_username_look_the_same(app, alice):
    wrong_password = sign_in(CsrfClient(app.test_client()), "alice", "not-the-password")
    unknown_user = sign_in(CsrfClient(app.test_client()), "nobody", "not-the-password")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert flashes(wrong_password) == flashes(unknown_user)
    assert flashes(wrong_password) == ["Unknown username or wrong password."]


def test_a_disabled_user_cannot_sign_in_and_is_not_told_why(anon, app, alice):
    alice.active = False
    db.session.commit()
    r = sign_in(anon, "alice")
    unknown = sign_in(CsrfClient(app.test_client()), "nobody", PASSWORD)
    assert r.status_code == unknown.status_code == 401
    assert flashes(r) == flashes(unknown)
    assert not is_signed_in(anon)


def test_an_incomplete_login_form_gives_field_errors_not_a_sign_in(anon, alice):
    forms = {
        "empty": {},
        "no password": {"username": "alice"},
        "no username": {"password": PASSWORD},
        "long username": {"username": "a" * 65, "password": PASSWORD},
        "long password": {"username": "alice", "password": "p" * 201},
    }
    got = {}
    for name, form in forms.items():
        r = anon.post("/login", form, token_from="/login")
        got[name] = (r.status_code, bool(field_errors(r, "username") or field_errors(r, "password")))
    assert got == {name: (400, True) for name in forms}
    assert not is_signed_in(anon)


# Sign-in throttling has its own file: test_throttle.py.


# -- signing out, CSRF, cookies -----------------------------------------------

def test_logout_is_refused_on_get(login, alice):
    c = login("alice")
    assert c.get("/logout").status_code == 405
    assert is_signed_in(c)


def test_logout_without_a_csrf_token_is_refused(login, alice):
    c = login("alice")
    r = c.client.post("/logout")
    assert r.status_code == 400
    assert is_signed_in(c)


def test_logout_with_a_csrf_token_signs_out(login, alice):
    c = login("alice")
    r = c.post("/logout")
    assert r.status_code == 302
    assert urlsplit(r.location).path == "/login"
    assert not is_signed_in(c)


def test_a_post_without_a_valid_csrf_token_gets_a_friendly_400(app, alice, login):
    c = login("alice")
    for token in (None, "", "forged-token"):
        data = {"puid": "P1", "family_name": "Doe", "sex": "F"}
        if token is not None:
            data["csrf_token"] = token
        r = c.client.post("/patients/new", data=data)
        assert r.status_code == 400, token
        body = r.get_data(as_text=True)
        assert "Form expired" in body and "reload and try again" in body
        assert "Traceback" not in body
    assert is_signed_in(c)


def test_the_login_form_itself_needs_a_csrf_token(anon, alice):
    r = anon.client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert r.status_code == 400
    assert "Form expired" in r.get_data(as_text=True)
    assert not is_signed_in(anon)


def _cookie(resp, name: str) -> str:
    [header] = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    return header


def test_the_session_cookie_is_httponly_and_samesite_lax(anon, alice):
    r = sign_in(anon, "alice")
    cookie = _cookie(r, "session")
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes


def test_the_remember_cookie_is_httponly_and_samesite_lax(anon, alice):
    r = sign_in(anon, "alice", remember="y")
    cookie = _cookie(r, "remember_token")
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes


# -- changing one's own password ---------------------------------------------

def change(c: CsrfClient, current: str, new: str, confirm: str | None = None):
    return c.post("/account", {"current_password": current, "new_password": new,
                               "confirm": new if confirm is None else confirm})


def test_password_change_with_a_wrong_current_password_is_refused(login, alice):
    c = login("alice")
    r = change(c, "not-my-password", NEW_PASSWORD)
    assert r.status_code == 400
    assert field_errors(r, "current_password") == ["This is not your current password."]
    assert reload(alice).check_password(PASSWORD)


def test_a_weak_new_password_is_refused(login, alice):
    c = login("alice")
    weak = ["short1", "aaaaaaaaaaaa", "abababababab", "        ", ""]
    got = {w: (lambda r: (r.status_code, bool(field_errors(r, "new_password"))))(change(c, PASSWORD, w))
           for w in weak}
    assert got == {w: (400, True) for w in weak}
    assert reload(alice).check_password(PASSWORD)


def test_a_mismatched_confirmation_is_refused(login, alice):
    c = login("alice")
    r = change(c, PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x")
    assert r.status_code == 400
    assert field_errors(r, "confirm") == ["Passwords do not match."]
    assert reload(alice).check_password(PASSWORD)


def test_the_same_password_again_is_refused(login, alice):
    """Not a change at all: whoever knew it before still knows it."""
    before = alice.password_hash
    c = login("alice")
    r = change(c, PASSWORD, PASSWORD)
    assert r.status_code == 400
    assert field_errors(r, "new_password") == ["Choose a password different from the one you signed in with."]
    assert reload(alice).password_hash == before  # a new hash would have a new salt


def test_changing_the_password_keeps_this_session_and_ends_the_others(login, app, alice):
    here = login("alice")
    elsewhere = login("alice")
    r = change(here, PASSWORD, NEW_PASSWORD)
    assert r.status_code == 302
    assert urlsplit(r.location).path == "/account"
    assert is_signed_in(here)
    assert not is_signed_in(elsewhere)
    assert sign_in(CsrfClient(app.test_client()), "alice", PASSWORD).status_code == 401
    assert sign_in(CsrfClient(app.test_client()), "alice", NEW_PASSWORD).status_code == 302


def test_passwords_are_stored_hashed_and_salted(full_cost_hashes, login, alice, make_user):
    bob = make_user("bob", "physician")
    stored = reload(alice).password_hash
    assert PASSWORD not in stored
    assert stored.startswith("scrypt:")
    assert stored != reload(bob).password_hash  # same password, different salt
    change(login("alice"), PASSWORD, NEW_PASSWORD)
    stored = reload(alice).password_hash
    assert NEW_PASSWORD not in stored and PASSWORD not in stored
    row = db.session.execute(select(User.__table__).where(User.id == alice.id)).mappings().one()
    assert not any(NEW_PASSWORD in str(v) for v in row.values())
