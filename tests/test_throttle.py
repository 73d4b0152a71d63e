"""Sign-in throttling: per (username, address) and per address, growing
waits instead of a lock of the account, one message for every refusal, and
the administrators' page that lists and clears throttles."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from ghimaging.auth import throttle
from ghimaging.extensions import db
from ghimaging.models import LoginThrottle
from ghimaging.models._time import utcnow
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient

ATTACKER = "203.0.113.66"
OFFICE = "192.0.2.10"
WAIT = re.compile(r"Too many failed sign-ins\. Try again in (\d+) seconds\.")


class Clock:
    """The throttle's notion of now, moved by the test instead of sleeping."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(throttle, "utcnow", c)
    return c


@pytest.fixture
def alice(make_user):
    return make_user("alice", "physician")


@pytest.fixture
def admin(make_user):
    return make_user("root", "admin")


def client_at(app, address: str) -> CsrfClient:
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = address
    return CsrfClient(c)


def sign_in(c: CsrfClient, username: str, password: str = PASSWORD):
    return c.post("/login", {"username": username, "password": password}, token_from="/login")


def flashes(resp, category: str = "error") -> list[str]:
    return [html.unescape(m) for m in
            re.findall(rf'<div class="flash flash-{category}">(.*?)</div>', resp.get_data(as_text=True))]


def waited(resp) -> int:
    """The wait a 429 announces, in seconds."""
    assert resp.status_code == 429, resp.status_code
    [message] = flashes(resp)
    m = WAIT.fullmatch(message)
    assert m, message
    return int(m.group(1))


def fail(c: CsrfClient, username: str, times: int) -> None:
    for _ in range(times):
        assert sign_in(c, username, "wrong-password-1").status_code == 401


def is_signed_in(c: CsrfClient) -> bool:
    r = c.get("/account")
    if r.status_code == 302:
        assert urlsplit(r.location).path == "/login"
        return False
    assert r.status_code == 200
    return True


def row(key: str) -> LoginThrottle | None:
    db.session.expire_all()
    return db.session.get(LoginThrottle, key)


# -- nobody is locked out -----------------------------------------------------

def test_failures_from_one_address_do_not_stop_the_rightful_user_at_another(app, clock, admin):
    """Today's finding: five wrong passwords from anywhere locked the admin out."""
    attacker = client_at(app, ATTACKER)
    fail(attacker, "root", app.config["LOGIN_MAX_FAILURES"])
    assert sign_in(attacker, "root", PASSWORD).status_code == 429
    rightful = client_at(app, OFFICE)
    assert sign_in(rightful, "root", PASSWORD).status_code == 302
    assert is_signed_in(rightful)


def test_an_address_guessing_many_usernames_is_slowed_and_others_are_not(app, clock, alice):
    limit = app.config["LOGIN_MAX_FAILURES"]
    attacker = client_at(app, ATTACKER)
    for n in range(limit * throttle.ADDRESS_FACTOR):
        # a new username each time: the per-user count never reaches its limit
        assert sign_in(attacker, f"user{n}", "wrong-password-1").status_code == 401
    assert waited(sign_in(attacker, "alice", PASSWORD)) >= 1
    assert sign_in(client_at(app, OFFICE), "alice", PASSWORD).status_code == 302


# -- growing waits ------------------------------------------------------------

def test_each_failure_past_the_allowance_doubles_the_wait_up_to_the_cap(app, clock, alice):
    app.config["LOGIN_LOCKOUT_SECONDS"] = 20
    c = client_at(app, ATTACKER)
    fail(c, "alice", app.config["LOGIN_MAX_FAILURES"])
    seen = []
    for _ in range(5):
        wait = waited(sign_in(c, "alice", "wrong-password-1"))
        seen.append(wait)
        clock.advance(wait - 0.5)
        assert waited(sign_in(c, "alice", "wrong-password-1")) == 1  # not yet
        clock.advance(0.5)
        assert sign_in(c, "alice", "wrong-password-1").status_code == 401  # checked again
    seen.append(waited(sign_in(c, "alice", "wrong-password-1")))
    assert seen == [2, 4, 8, 16, 20, 20]


def test_during_a_wait_even_the_right_password_is_refused_and_not_counted(app, clock, alice):
    c = client_at(app, ATTACKER)
    limit = app.config["LOGIN_MAX_FAILURES"]
    fail(c, "alice", limit)
    for _ in range(3):
        assert waited(sign_in(c, "alice", PASSWORD)) == 2
    assert not is_signed_in(c)
    assert row(f"user:{ATTACKER}:alice").failures == limit
    clock.advance(2)
    assert sign_in(c, "alice", PASSWORD).status_code == 302


def test_the_count_ignores_the_case_of_the_username(app, clock, alice):
    c = client_at(app, ATTACKER)
    fail(c, "alice", app.config["LOGIN_MAX_FAILURES"] - 1)
    fail(c, "ALICE", 1)
    assert waited(sign_in(c, "Alice", PASSWORD)) == 2


def test_unknown_usernames_are_throttled_like_real_ones_with_the_same_message(app, clock, alice):
    """Otherwise the throttle itself would tell which usernames exist."""
    c = client_at(app, ATTACKER)
    limit = app.config["LOGIN_MAX_FAILURES"]
    fail(c, "nobody", limit)
    fail(c, "alice", limit)
    ghost, real = sign_in(c, "nobody", PASSWORD), sign_in(c, "alice", PASSWORD)
    assert ghost.status_code == real.status_code == 429
    assert flashes(ghost) == flashes(real)


def test_a_success_forgets_the_users_failures_here_and_their_share_of_the_address(app, clock, alice, make_user):
    make_user("bob", "radiologist")
    c = client_at(app, OFFICE)
    limit = app.config["LOGIN_MAX_FAILURES"]
    fail(c, "alice", limit - 1)
    fail(c, "bob", 2)
    assert row(f"address:{OFFICE}").failures == limit + 1
    assert sign_in(c, "alice", PASSWORD).status_code == 302
    assert row(f"user:{OFFICE}:alice") is None
    assert row(f"address:{OFFICE}").failures == 2  # bob's failures stay
    fail(client_at(app, OFFICE), "alice", limit - 1)  # a fresh allowance
    assert sign_in(client_at(app, OFFICE), "alice", PASSWORD).status_code == 302


def test_throttling_one_username_leaves_other_users_at_the_same_address_alone(app, clock, alice, make_user):
    make_user("bob", "radiologist")
    fail(client_at(app, OFFICE), "alice", app.config["LOGIN_MAX_FAILURES"])
    assert sign_in(client_at(app, OFFICE), "bob", PASSWORD).status_code == 302


def test_counts_are_forgotten_after_a_quiet_day(app, clock, alice):
    c = client_at(app, ATTACKER)
    limit = app.config["LOGIN_MAX_FAILURES"]
    fail(c, "alice", limit)
    clock.advance(throttle.FORGET_AFTER.total_seconds() + 1)
    fail(c, "alice", 1)  # counted from nothing: no wait afterwards
    assert row(f"user:{ATTACKER}:alice").failures == 1
    clock.advance(throttle.FORGET_AFTER.total_seconds() + 1)
    fail(client_at(app, OFFICE), "carol", 1)  # any failure sweeps the keys quiet for a day
    db.session.expire_all()
    assert db.session.scalars(select(LoginThrottle.key).order_by(LoginThrottle.key)).all() == \
        [f"address:{OFFICE}", f"user:{OFFICE}:carol"]


# -- the administrators' page ---------------------------------------------------

def test_admin_sees_current_throttles_and_clears_one(app, clock, admin, alice, login):
    fail(client_at(app, ATTACKER), "alice", app.config["LOGIN_MAX_FAILURES"])
    c = login("root")
    page = c.get("/admin/sign-in-throttles")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', body, re.S))
    assert set(rows) == {f"user:{ATTACKER}:alice", f"address:{ATTACKER}"}
    assert "alice" in rows[f"user:{ATTACKER}:alice"] and ATTACKER in rows[f"user:{ATTACKER}:alice"]
    assert re.search(r">2 s<", rows[f"user:{ATTACKER}:alice"])
    r = c.post("/admin/sign-in-throttles/clear", {"key": f"user:{ATTACKER}:alice"}, token_from="/admin/sign-in-throttles")
    assert r.status_code == 302
    assert row(f"user:{ATTACKER}:alice") is None
    assert row(f"address:{ATTACKER}") is not None
    assert sign_in(client_at(app, ATTACKER), "alice", PASSWORD).status_code == 302


def test_admin_clears_every_throttle(app, clock, admin, alice, login):
    fail(client_at(app, ATTACKER), "alice", app.config["LOGIN_MAX_FAILURES"])
    fail(client_at(app, OFFICE), "nobody", 2)
    c = login("root")
    r = c.post("/admin/sign-in-throttles/clear-all", token_from="/admin/sign-in-throttles")
    assert r.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(LoginThrottle)) == 0
    assert "4 throttles cleared." in flashes(c.get("/admin/sign-in-throttles"), "success")


def test_the_page_says_so_when_there_is_no_throttle(admin, login):
    body = login("root").get("/admin/sign-in-throttles").get_data(as_text=True)
    assert "No failed sign-ins in the last day." in body


def test_clearing_needs_a_csrf_token_and_a_key(app, clock, admin, alice, login):
    fail(client_at(app, ATTACKER), "alice", 1)
    c = login("root")
    assert c.client.post("/admin/sign-in-throttles/clear", data={"key": f"user:{ATTACKER}:alice"}).status_code == 400
    assert c.client.post("/admin/sign-in-throttles/clear-all").status_code == 400
    assert c.post("/admin/sign-in-throttles/clear", {"key": ""}).status_code == 400
    assert row(f"user:{ATTACKER}:alice") is not None


def test_clearing_a_throttle_that_already_ended_says_so(admin, login):
    c = login("root")
    r = c.post("/admin/sign-in-throttles/clear", {"key": "user:1.2.3.4:ghost"})
    assert r.status_code == 302
    assert "That throttle had already ended." in flashes(c.get("/admin/sign-in-throttles"), "info")


def test_only_admins_see_or_clear_throttles(app, clock, alice, login):
    fail(client_at(app, ATTACKER), "alice", 1)
    c = login("alice")
    assert c.get("/admin/sign-in-throttles").status_code == 403
    assert c.post("/admin/sign-in-throttles/clear", {"key": f"user:{ATTACKER}:alice"}).status_code == 403
    assert c.post("/admin/sign-in-throttles/clear-all").status_code == 403
    assert row(f"user:{ATTACKER}:alice") is not None


def test_the_users_page_links_to_the_throttles(admin, login):
    body = login("root").get("/admin/users").get_data(as_text=True)
    assert 'href="/admin/sign-in-throttles"' in body
