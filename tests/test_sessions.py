"""Server-side sessions: signing out ends a sign-in for good (session cookie
and remember-me cookie alike), every sign-in gets new cookies and a new CSRF
token, "sign out everywhere", and password changes, resets and disabling end
sessions and API tokens. Cookies are Secure together."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask_login.utils import encode_cookie
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import ApiToken, User, UserSession
from ghimaging.models._time import utcnow
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient

NEW_PASSWORD = "Fresh-passw0rd-42"


@pytest.fixture
def alice(make_user):
    return make_user("alice", "physician")


@pytest.fixture
def admin(make_user):
    return make_user("root", "admin")


def sign_in(app, username: str, password: str = PASSWORD, *, remember: bool = False, c: CsrfClient | None = None):
    c = c or CsrfClient(app.test_client())
    data = {"username": username, "password": password}
    if remember:
        data["remember"] = "y"
    r = c.post("/login", data, token_from="/login")
    assert r.status_code == 302, r.status_code
    return c


def cookie(c: CsrfClient, name: str) -> str | None:
    found = c.client.get_cookie(name)
    return found.value if found else None


def replay(app, **cookies: str) -> CsrfClient:
    """A new browser holding only the given cookies (as copied by a thief)."""
    c = app.test_client()
    for name, value in cookies.items():
        c.set_cookie(name, value)
    return CsrfClient(c)


def is_signed_in(c: CsrfClient) -> bool:
    r = c.get("/account")
    if r.status_code == 302:
        assert urlsplit(r.location).path == "/login"
        return False
    assert r.status_code == 200
    return True


def flashes(resp, category: str) -> list[str]:
    return [html.unescape(m) for m in
            re.findall(rf'<div class="flash flash-{category}">(.*?)</div>', resp.get_data(as_text=True))]


def live_sessions(user: User) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == user.id))


def create_token(c: CsrfClient) -> str:
    r = c.post("/account/tokens", {"token-name": "script"})
    assert r.status_code == 200
    return html.unescape(re.search(r'<pre class="token" id="token">([^<]+)</pre>', r.get_data(as_text=True)).group(1))


def token_works(app, token: str) -> bool:
    r = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (200, 401), r.status_code
    return r.status_code == 200


# -- pages opened at once after signing in -----------------------------------

def test_pages_opened_at_once_after_sign_in_share_one_form_token(app, alice):
    """A browser restoring several tabs right after signing in loads them in
    parallel with the sign-in's cookie: each page's form must still be
    accepted, whichever page's cookie the browser keeps last."""
    c = sign_in(app, "alice")
    after_sign_in = cookie(c, "session")
    tabs = [replay(app, session=after_sign_in) for _ in range(2)]
    tokens = [re.search(r'name="csrf_token" value="([^"]+)"', tab.get("/account").get_data(as_text=True)).group(1)
              for tab in tabs]
    last = tabs[-1].client  # the cookie the browser kept: the last page's
    for token in tokens:
        r = last.post("/account/tokens", data={"token-name": "tab", "csrf_token": token})
        assert r.status_code == 200, r.status_code


# -- signing out ends the session for good -------------------------------------

def test_a_session_cookie_saved_before_logout_is_refused_after_it(app, alice):
    c = sign_in(app, "alice")
    saved = cookie(c, "session")
    assert is_signed_in(replay(app, session=saved))  # the copy works while signed in
    assert c.post("/logout").status_code == 302
    assert not is_signed_in(replay(app, session=saved))
    assert not is_signed_in(c)
    assert live_sessions(alice) == 0


def test_the_remember_cookie_is_new_at_every_sign_in(app, alice):
    first = cookie(sign_in(app, "alice", remember=True), "remember_token")
    second = cookie(sign_in(app, "alice", remember=True), "remember_token")
    assert first and second and first != second
    assert is_signed_in(replay(app, remember_token=first))
    assert is_signed_in(replay(app, remember_token=second))


def test_the_remember_cookie_is_dead_after_logout(app, alice):
    c = sign_in(app, "alice", remember=True)
    saved_remember, saved_session = cookie(c, "remember_token"), cookie(c, "session")
    assert is_signed_in(replay(app, remember_token=saved_remember))
    r = c.post("/logout")
    assert any(h.startswith("remember_token=;") for h in r.headers.getlist("Set-Cookie"))  # the browser drops it
    assert not is_signed_in(replay(app, remember_token=saved_remember))
    assert not is_signed_in(replay(app, session=saved_session, remember_token=saved_remember))


def test_a_dead_remember_cookie_is_removed_from_the_browser(app, alice):
    c = sign_in(app, "alice", remember=True)
    saved = cookie(c, "remember_token")
    c.post("/logout")
    thief = replay(app, remember_token=saved)
    r = thief.get("/account")
    assert r.status_code == 302
    assert any(h.startswith("remember_token=;") for h in r.headers.getlist("Set-Cookie"))


def test_logout_ends_only_this_browsers_session(app, alice):
    here, there = sign_in(app, "alice"), sign_in(app, "alice")
    here.post("/logout")
    assert not is_signed_in(here)
    assert is_signed_in(there)


def test_cookies_from_before_server_side_sessions_are_refused(app, alice):
    """The old ``<id>:<session_version>`` value: signed with the right key,
    but it names no session."""
    assert not is_signed_in(replay(app, remember_token=encode_cookie(f"{alice.id}:1")))


def test_an_expired_session_is_refused_whatever_the_cookie_says(app, alice):
    c = sign_in(app, "alice", remember=True)
    saved = cookie(c, "remember_token")
    row = db.session.scalar(select(UserSession).where(UserSession.user_id == alice.id))
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert not is_signed_in(c)
    assert not is_signed_in(replay(app, remember_token=saved))


def test_sessions_last_a_working_day_or_the_remember_duration(app, alice):
    sign_in(app, "alice")
    sign_in(app, "alice", remember=True)
    db.session.expire_all()
    rows = {r.remember: r.expires_at - r.created_at
            for r in db.session.scalars(select(UserSession).where(UserSession.user_id == alice.id))}
    assert rows == {False: app.config["PERMANENT_SESSION_LIFETIME"], True: app.config["REMEMBER_COOKIE_DURATION"]}


def test_last_seen_is_written_at_most_once_a_minute_and_moves_the_idle_expiry(app, alice):
    c = sign_in(app, "alice")
    row = db.session.scalar(select(UserSession).where(UserSession.user_id == alice.id))
    before = (row.last_seen_at, row.expires_at)
    assert is_signed_in(c)
    db.session.expire_all()
    assert (row.last_seen_at, row.expires_at) == before  # within the minute: untouched
    row.last_seen_at -= timedelta(minutes=2)
    row.expires_at -= timedelta(minutes=2)
    db.session.commit()
    start = utcnow()
    assert is_signed_in(c)
    db.session.expire_all()
    assert row.last_seen_at >= start
    assert row.expires_at >= start + app.config["PERMANENT_SESSION_LIFETIME"]


# -- every sign-in is new --------------------------------------------------------

def test_a_csrf_token_from_before_sign_in_is_refused_after_it(app, alice):
    c = CsrfClient(app.test_client())
    old = c.token("/login")
    assert c.client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": old}).status_code == 302
    r = c.client.post("/account/tokens", data={"token-name": "x", "csrf_token": old})
    assert r.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0
    assert c.post("/account/tokens", {"token-name": "x"}).status_code == 200  # a token from now works


def test_a_csrf_token_from_a_signed_in_session_is_refused_after_logout(app, alice, make_user):
    make_user("bob", "physician")
    c = sign_in(app, "alice")
    old = c.token("/account")
    c.post("/logout")
    r = c.client.post("/login", data={"username": "bob", "password": PASSWORD, "csrf_token": old})
    assert r.status_code == 400
    assert not is_signed_in(c)


# -- sign out everywhere -------------------------------------------------------

def test_sign_out_everywhere_ends_every_session_this_one_included(app, alice):
    here = sign_in(app, "alice")
    phone = sign_in(app, "alice", remember=True)
    saved = cookie(phone, "remember_token")
    assert live_sessions(alice) == 2
    r = here.post("/account/sessions/end-all")
    assert r.status_code == 302 and urlsplit(r.location).path == "/login"
    assert not is_signed_in(here)
    assert not is_signed_in(phone)
    assert not is_signed_in(replay(app, remember_token=saved))
    assert live_sessions(alice) == 0


def test_sign_out_everywhere_leaves_other_users_alone(app, alice, make_user):
    make_user("bob", "physician")
    bob = sign_in(app, "bob")
    sign_in(app, "alice").post("/account/sessions/end-all")
    assert is_signed_in(bob)


def test_the_account_page_lists_sessions_and_ends_one(app, alice):
    here = sign_in(app, "alice")
    other = CsrfClient(app.test_client())
    other.client.environ_base.update(REMOTE_ADDR="192.0.2.7", HTTP_USER_AGENT="Firefox on the ward PC")
    sign_in(app, "alice", remember=True, c=other)
    body = here.get("/account").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-session="(\d+)">(.*?)</tr>', body, re.S))
    assert len(rows) == 2
    [(mine, _)] = [(i, t) for i, t in rows.items() if "This browser" in t]
    [(theirs, text)] = [(i, t) for i, t in rows.items() if i != mine]
    assert "Firefox on the ward PC" in text and "192.0.2.7" in text and "Kept signed in" in text
    assert here.post(f"/account/sessions/{theirs}/end").status_code == 302
    assert not is_signed_in(other)
    assert is_signed_in(here)


def test_ending_this_browsers_session_from_the_list_signs_out(app, alice):
    c = sign_in(app, "alice")
    [row_id] = db.session.scalars(select(UserSession.id).where(UserSession.user_id == alice.id)).all()
    r = c.post(f"/account/sessions/{row_id}/end")
    assert urlsplit(r.location).path == "/login"
    assert not is_signed_in(c)


def test_another_users_session_cannot_be_ended(app, alice, make_user):
    bob = make_user("bob", "physician")
    bobs = sign_in(app, "bob")
    [bob_row] = db.session.scalars(select(UserSession.id).where(UserSession.user_id == bob.id)).all()
    c = sign_in(app, "alice")
    assert c.post(f"/account/sessions/{bob_row}/end").status_code == 404
    assert c.post("/account/sessions/999999/end").status_code == 404
    assert is_signed_in(bobs)


def test_ending_sessions_needs_a_csrf_token(app, alice):
    c = sign_in(app, "alice")
    assert c.client.post("/account/sessions/end-all").status_code == 400
    [row_id] = db.session.scalars(select(UserSession.id)).all()
    assert c.client.post(f"/account/sessions/{row_id}/end").status_code == 400
    assert is_signed_in(c)


# -- passwords, resets and disabling ---------------------------------------------

def change_password(c: CsrfClient, *, revoke_tokens: bool):
    data = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    if revoke_tokens:
        data["revoke_tokens"] = "y"
    return c.post("/account", data)


def test_changing_ones_password_ends_the_other_sessions_and_keeps_tokens_by_default(app, alice):
    here = sign_in(app, "alice")
    there = sign_in(app, "alice", remember=True)
    saved = cookie(there, "remember_token")
    token = create_token(here)
    r = change_password(here, revoke_tokens=False)
    assert r.status_code == 302
    assert is_signed_in(here)
    assert not is_signed_in(there)
    assert not is_signed_in(replay(app, remember_token=saved))
    assert token_works(app, token)


def test_changing_ones_password_can_revoke_ones_api_tokens(app, alice):
    here = sign_in(app, "alice")
    token = create_token(here)
    assert 'name="revoke_tokens"' in here.get("/account").get_data(as_text=True)
    r = change_password(here, revoke_tokens=True)
    assert r.status_code == 302
    assert "your API tokens revoked" in " ".join(flashes(here.get("/account"), "success"))
    assert is_signed_in(here)
    assert not token_works(app, token)


def test_an_admin_reset_ends_the_users_sessions_and_api_tokens(app, admin, alice, login):
    theirs = sign_in(app, "alice", remember=True)
    saved = cookie(theirs, "remember_token")
    token = create_token(theirs)
    as_admin = login("root")
    r = as_admin.post(f"/admin/users/{alice.id}/password", {"reset-new_password": NEW_PASSWORD})
    assert r.status_code == 302
    assert not is_signed_in(theirs)
    assert not is_signed_in(replay(app, remember_token=saved))
    assert not token_works(app, token)
    assert is_signed_in(as_admin)


def test_an_admin_resetting_their_own_password_keeps_this_session_only(app, admin, login):
    here, there = login("root"), login("root")
    token = create_token(here)
    assert here.post(f"/admin/users/{admin.id}/password", {"reset-new_password": NEW_PASSWORD}).status_code == 302
    assert is_signed_in(here)
    assert not is_signed_in(there)
    assert not token_works(app, token)


def test_disabling_a_user_ends_their_sessions_and_api_tokens_for_good(app, admin, alice, login):
    theirs = sign_in(app, "alice", remember=True)
    saved = cookie(theirs, "remember_token")
    token = create_token(theirs)
    as_admin = login("root")
    edit = {"full_name": alice.full_name, "email": alice.email, "roles": ["physician"]}
    assert as_admin.post(f"/admin/users/{alice.id}", edit).status_code == 302  # active unticked
    assert not is_signed_in(theirs)
    assert not token_works(app, token)
    assert as_admin.post(f"/admin/users/{alice.id}", {**edit, "active": "y"}).status_code == 302
    assert not is_signed_in(replay(app, remember_token=saved))  # enabling again revives nothing
    assert not token_works(app, token)
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0


def test_admin_signs_a_user_out_everywhere(app, admin, alice, login):
    theirs = [sign_in(app, "alice"), sign_in(app, "alice", remember=True)]
    as_admin = login("root")
    page = as_admin.get(f"/admin/users/{alice.id}").get_data(as_text=True)
    assert "Signed in on 2 browsers" in page
    r = as_admin.post(f"/admin/users/{alice.id}/sessions/end", token_from=f"/admin/users/{alice.id}")
    assert r.status_code == 302
    assert flashes(as_admin.get(r.location), "success") == ["alice is signed out everywhere (2 sessions ended)."]
    assert not any(is_signed_in(c) for c in theirs)
    assert is_signed_in(as_admin)


def test_only_admins_end_other_users_sessions(app, alice, make_user, login):
    make_user("bob", "physician")
    bobs = sign_in(app, "bob")
    bob_id = db.session.scalar(select(User.id).where(User.username == "bob"))
    assert login("alice").post(f"/admin/users/{bob_id}/sessions/end").status_code == 403
    assert is_signed_in(bobs)


# -- cookies follow one Secure setting -------------------------------------------

def cookie_attributes(resp, name: str) -> list[str]:
    [header] = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    return [a.strip().lower() for a in header.split(";")[1:]]


def remembered_sign_in(app):
    c = CsrfClient(app.test_client())
    return c.post("/login", {"username": "alice", "password": PASSWORD, "remember": "y"}, token_from="/login")


class TestSecureFromTheEnvironment:
    @pytest.fixture
    def app_config(self, monkeypatch):
        monkeypatch.delenv("GHIMAGING_REMEMBER_COOKIE_SECURE", raising=False)
        monkeypatch.setenv("GHIMAGING_SESSION_COOKIE_SECURE", "true")
        return {}

    def test_both_cookies_are_secure(self, app, alice):
        r = remembered_sign_in(app)
        assert "secure" in cookie_attributes(r, "session")
        assert "secure" in cookie_attributes(r, "remember_token")


class TestSecureFromTheRememberSetting:
    @pytest.fixture
    def app_config(self, monkeypatch):
        monkeypatch.delenv("GHIMAGING_SESSION_COOKIE_SECURE", raising=False)
        monkeypatch.setenv("GHIMAGING_REMEMBER_COOKIE_SECURE", "true")
        return {}

    def test_both_cookies_are_secure(self, app, alice):
        r = remembered_sign_in(app)
        assert "secure" in cookie_attributes(r, "session")
        assert "secure" in cookie_attributes(r, "remember_token")


def test_neither_cookie_is_secure_by_default(app, alice):
    r = remembered_sign_in(app)
    assert "secure" not in cookie_attributes(r, "session")
    assert "secure" not in cookie_attributes(r, "remember_token")


@pytest.mark.parametrize("named", ["²:secret", "١:secret", "1234567890:secret", "1:", ":secret", "x:y", ""])
def test_a_cookie_that_names_no_session_is_refused_not_a_crash(app, alice, named):
    """Only ASCII digits name a user (``isdigit`` passes "²", which ``int``
    refuses); both the loader and the light read say "nobody"."""
    from ghimaging.auth import sessions

    with app.test_request_context("/"):
        assert sessions.load(named) is None
        assert sessions.peek(named) is None
