"""The viewer's light sign-in check (auth/light.py, sessions.peek) against a
real Orthanc: frames, and only frames, are served on the signed-in person
read in one light statement, and that shortcut never lets a frame through
that the usual loader (sessions.load) would have refused.

Why: a frame is a patient's image. A signed-out, ended, expired, disabled
or role-less sign-in must get none, a cookie naming one person with
another's session secret must be taken for nobody, the gate (a password to
choose) and the permission map still apply, and the once-a-minute touch of
the session row (with the session cookie sent again, its expiry moved)
still happens when only frames are asked for. Each check also names the
path that decided it: ``peek`` and ``load`` are wrapped to count their
calls (the real functions run). The light read serves only a frame that
will be given; whenever its answer would be a refusal (a dead session, a
password to choose, a role refused) or it cannot decide (no ``_user_id``,
the touch due), the loader runs and answers as for any page.
"""
# ruff: noqa: F811  (the viewer's fixtures, imported from tests.test_viewer)

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
from sqlalchemy import delete, select

from ghimaging.auth import sessions
from ghimaging.extensions import db
from ghimaging.models import User, UserSession
from ghimaging.models._time import utcnow
from tests.support import dicomgen
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient
from tests.test_sessions import cookie, replay
from tests.test_viewer import app_config, ct_series, frame_url, linked, staff  # noqa: F401  # fixtures

GERMAN_NOT_IN_SERIES = "Dieses Bild gehört nicht zu dieser Serie."  # de messages.po: "This image is not in this series."


class Calls(Counter):
    """How often ``peek`` and ``load`` ran, and what ``peek`` answered."""

    def __init__(self) -> None:
        super().__init__()
        self.peeked: list[object] = []

    def clear(self) -> None:
        super().clear()
        self.peeked.clear()


@pytest.fixture
def calls(monkeypatch) -> Calls:
    """Count the real ``sessions.peek`` and ``sessions.load`` (instrumentation:
    both still run; light.py and the user loader look them up on the module)."""
    counted = Calls()
    real_peek, real_load = sessions.peek, sessions.load

    def peek(user_id):
        counted["peek"] += 1
        seen = real_peek(user_id)
        counted.peeked.append(seen)
        return seen

    def load(user_id):
        counted["load"] += 1
        return real_load(user_id)

    monkeypatch.setattr(sessions, "peek", peek)
    monkeypatch.setattr(sessions, "load", load)
    return counted


def sign_in(app, username: str, *, remember: bool = False):
    """(a browser signed in as ``username``, the sign-in's response)."""
    c = CsrfClient(app.test_client())
    data = {"username": username, "password": PASSWORD, **({"remember": "y"} if remember else {})}
    r = c.post("/login", data, token_from="/login")
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return c, r


def session_row(user: User) -> UserSession:
    db.session.expire_all()
    [row] = db.session.scalars(select(UserSession).where(UserSession.user_id == user.id)).all()
    return row


def is_png(r) -> bool:
    return r.status_code == 200 and r.mimetype == "image/png" and r.data.startswith(b"\x89PNG")


def refused_to_sign_in(r) -> bool:
    """Sent to the sign-in page (a browser) or 401, and no image."""
    if r.mimetype == "image/png" or r.data.startswith(b"\x89PNG"):
        return False
    return r.status_code == 401 or (r.status_code == 302 and urlsplit(r.location).path == "/login")


def session_set_cookie(app, r) -> str | None:
    name = app.config["SESSION_COOKIE_NAME"]
    found = [h for h in r.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(found) <= 1
    return found[0] if found else None


def expires(header: str):
    [value] = [a.split("=", 1)[1] for a in (p.strip() for p in header.split(";")) if a.lower().startswith("expires=")]
    return parsedate_to_datetime(value).replace(tzinfo=None)


# -- the light path is taken for frames, and only for them -----------------------------

def test_a_frame_is_served_on_the_light_read_and_pages_use_the_loader(linked, login, calls):
    _req, _result, series, ids = linked
    rad = login("rad")
    calls.clear()
    r = rad.get(frame_url(series, ids[1]))
    assert is_png(r), r.status_code
    assert calls["peek"] == 1 and calls["load"] == 0
    for page in ("/", "/requests", f"/viewer/series/{series.id}"):
        calls.clear()
        assert rad.get(page).status_code == 200, page
        assert calls["load"] == 1 and calls["peek"] == 0, page


# -- a dead sign-in gets no frame ----------------------------------------------------------

def sign_out(app, c, user):
    assert c.post("/logout").status_code == 302


def end_from_another_browsers_account_page(app, c, user):
    other, _ = sign_in(app, user.username)
    mine = db.session.scalars(select(UserSession.id).where(UserSession.user_id == user.id)
                              .order_by(UserSession.id)).first()
    r = other.post(f"/account/sessions/{mine}/end")
    assert r.status_code == 302 and urlsplit(r.location).path != "/login"  # the other browser stays in


def end_all_by_the_service(app, c, user):
    assert sessions.end_all(db.session.get(User, user.id)) == 1
    db.session.commit()


def disable_the_user(app, c, user):
    db.session.get(User, user.id).active = False  # as stored; the admin page also ends the sessions
    db.session.commit()


def expire_the_row(app, c, user):
    session_row(user).expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def delete_the_row(app, c, user):
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    db.session.commit()


@pytest.mark.parametrize("kill", [sign_out, end_from_another_browsers_account_page, end_all_by_the_service,
                                  disable_the_user, expire_the_row, delete_the_row],
                         ids=lambda f: f.__name__)
def test_a_dead_sign_in_gets_no_frame(app, linked, staff, calls, kill):
    """The saved session cookie gets a frame on the light path while the
    sign-in lives (also after one frame was served: nothing is remembered
    between requests), and none once it is dead: peek steps aside and the
    loader refuses."""
    _req, _result, series, ids = linked
    c, _ = sign_in(app, "rad")
    saved = cookie(c, "session")
    calls.clear()
    assert is_png(replay(app, session=saved).get(frame_url(series, ids[1])))
    assert calls["load"] == 0
    kill(app, c, staff["rad"])
    calls.clear()
    thief = replay(app, session=saved)
    r = thief.get(frame_url(series, ids[1]))
    assert refused_to_sign_in(r), (r.status_code, r.mimetype)
    assert calls["peek"] == 1 and calls.peeked == [None] and calls["load"] >= 1
    assert refused_to_sign_in(thief.get(frame_url(series, ids[2])))


# -- a cookie naming someone else --------------------------------------------------------------

def test_a_cookie_naming_another_user_with_ones_secret_is_taken_for_nobody(app, linked, staff, make_user, calls):
    """``_user_id = "<other user's id>:<a real secret of rad>"``, signed with
    the app's key: neither rad (whose session it is) nor the other
    radiologist (whose id it names) is signed in by it."""
    _req, _result, series, ids = linked
    other = make_user("rad2", "radiologist")
    c, _ = sign_in(app, "rad")
    serializer = app.session_interface.get_signing_serializer(app)
    real = serializer.loads(cookie(c, "session"))
    uid, secret = real["_user_id"].split(":", 1)
    assert uid == str(staff["rad"].id) and secret
    forged = serializer.dumps({**real, "_user_id": f"{other.id}:{secret}"})
    calls.clear()
    browser = replay(app, session=forged)
    r = browser.get(frame_url(series, ids[1]))
    assert refused_to_sign_in(r), (r.status_code, r.mimetype)
    assert calls.peeked == [None]
    page = replay(app, session=forged).get("/", follow_redirects=True)
    assert urlsplit(page.request.url).path == "/login"
    assert 'name="password"' in page.get_data(as_text=True)
    assert is_png(c.get(frame_url(series, ids[1])))  # rad's own cookie still works: the forgery ended nothing


# -- the gate and the permission map still decide (the light read is used only for a frame that will
#    be served: a refusal steps aside to the loader, which draws it for the full user) -----------------

def test_roles_taken_away_while_signed_in_refuse_frames_at_once(app, linked, make_user, login, calls):
    _req, _result, series, ids = linked
    user = make_user("former", "technologist")
    signed_in = login("former")
    assert is_png(signed_in.get(frame_url(series, ids[1])))
    user.set_roles([])
    db.session.commit()
    calls.clear()
    r = signed_in.get(frame_url(series, ids[1]))
    assert r.status_code == 403 and r.mimetype != "image/png"
    assert calls.peeked[0].roles == frozenset()  # the light read saw the roles gone ...
    assert calls["load"] == 1  # ... and left the refusal to the loader (drawn for the full user)


def test_a_role_less_account_never_gets_a_frame(app, linked, make_user, calls):
    """An account left with no role cannot sign in, and a session cookie it
    kept from before its roles went gets no frame from any browser."""
    _req, _result, series, ids = linked
    user = make_user("nobody", "technologist")
    kept, _ = sign_in(app, "nobody")
    user.set_roles([])
    db.session.commit()
    calls.clear()
    r = replay(app, session=cookie(kept, "session")).get(frame_url(series, ids[1]))
    assert r.status_code == 403 and r.mimetype != "image/png"
    assert calls["peek"] == 1 and calls["load"] == 1  # a refusal is the loader's
    refused = CsrfClient(app.test_client()).post("/login", {"username": "nobody", "password": PASSWORD},
                                                 token_from="/login")
    assert refused.status_code == 401


def test_a_password_to_choose_sends_a_frame_to_the_choose_password_page(app, linked, staff, login, calls):
    _req, _result, series, ids = linked
    rad = login("rad")
    assert is_png(rad.get(frame_url(series, ids[1])))
    db.session.get(User, staff["rad"].id).must_change_password = True
    db.session.commit()
    calls.clear()
    r = rad.get(frame_url(series, ids[1]))
    assert r.status_code == 302 and urlsplit(r.location).path == "/account/password"
    assert r.mimetype != "image/png"
    assert calls.peeked[0].must_change_password and calls["load"] == 1  # a refusal is the loader's


# -- the once-a-minute touch and the session cookie ---------------------------------------------

def test_a_frame_due_the_touch_goes_through_the_loader_and_sends_the_cookie_again(app, linked, staff, calls):
    _req, _result, series, ids = linked
    c, _ = sign_in(app, "rad")
    calls.clear()
    within = c.get(frame_url(series, ids[1]))
    assert is_png(within) and calls["load"] == 0
    assert session_set_cookie(app, within) is None  # within the minute: the cookie is not signed anew
    row = session_row(staff["rad"])
    row.last_seen_at -= timedelta(minutes=2)
    row.expires_at -= timedelta(minutes=2)
    db.session.commit()
    start = utcnow()
    calls.clear()
    due = c.get(frame_url(series, ids[2]))
    assert is_png(due)
    assert calls["load"] == 1 and calls.peeked == [None]
    row = session_row(staff["rad"])
    assert row.last_seen_at >= start
    assert row.expires_at >= start + app.config["PERMANENT_SESSION_LIFETIME"]
    assert session_set_cookie(app, due) is not None
    calls.clear()
    after = c.get(frame_url(series, ids[3]))  # touched: light again, no cookie
    assert is_png(after) and calls["load"] == 0 and session_set_cookie(app, after) is None


def test_the_touch_moves_the_session_cookies_expiry_with_the_row(app, linked, staff):
    _req, _result, series, ids = linked
    c, signed_in = sign_in(app, "rad")
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"]
    at_sign_in = expires(session_set_cookie(app, signed_in))
    row = session_row(staff["rad"])
    row.last_seen_at -= timedelta(minutes=2)
    row.expires_at -= timedelta(minutes=2)
    db.session.commit()
    start = utcnow().replace(microsecond=0)
    due = c.get(frame_url(series, ids[1]))
    end = utcnow()
    assert is_png(due)
    header = session_set_cookie(app, due)
    assert header is not None, "the touch must send the session cookie again"
    after_touch = expires(header)
    assert start + lifetime <= after_touch <= end + lifetime
    assert after_touch >= at_sign_in
    row = session_row(staff["rad"])
    assert abs(after_touch - row.expires_at) <= timedelta(seconds=1)  # the cookie ends with the row


# -- remember me --------------------------------------------------------------------------------

def test_a_remember_cookie_alone_gets_frames_until_sign_out(app, linked, calls):
    _req, _result, series, ids = linked
    c, _ = sign_in(app, "rad", remember=True)
    remembered = cookie(c, "remember_token")
    assert remembered
    browser = replay(app, remember_token=remembered)  # the session cookie dropped (the browser was closed)
    calls.clear()
    assert is_png(browser.get(frame_url(series, ids[1])))
    assert calls["load"] >= 1  # through the loader: no _user_id in the session for the light read
    calls.clear()
    assert is_png(browser.get(frame_url(series, ids[2])))  # now with a session cookie: light
    assert calls["peek"] == 1 and calls["load"] == 0
    assert c.post("/logout").status_code == 302
    r = replay(app, remember_token=remembered).get(frame_url(series, ids[1]))
    assert refused_to_sign_in(r), (r.status_code, r.mimetype)
    assert refused_to_sign_in(browser.get(frame_url(series, ids[1])))


# -- the person's language ------------------------------------------------------------------------

def test_a_german_readers_frame_error_is_in_german(app, linked, staff, login, orthanc, create_patient,
                                                    create_request, calls):
    _req, _result, series, _ids = linked
    other = create_patient(family_name="Other", given_name="Person")
    other_req = create_request(other, submit=True, user=staff["doc"], physician=staff["doc"])
    [foreign] = ct_series(other, other_req, count=1)
    foreign_id = orthanc.upload(dicomgen.to_bytes(foreign))["ID"]
    rad = login("rad")
    db.session.get(User, staff["rad"].id).language = "de"
    db.session.commit()
    calls.clear()
    r = rad.get(frame_url(series, foreign_id), headers={"Accept-Language": "en"})
    assert r.status_code == 404
    assert r.get_json()["message"] == GERMAN_NOT_IN_SERIES
    assert calls["peek"] == 1 and calls["load"] == 0  # SeenUser.language chose it
