"""The user administration pages and API tokens on the account page."""

from __future__ import annotations

import hashlib
import html
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from ghimaging.auth import service
from ghimaging.extensions import db
from ghimaging.models import ApiToken, Role, User
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient

NEW_PASSWORD = "Fresh-passw0rd-42"


@pytest.fixture
def admin(make_user):
    return make_user("root", "admin", full_name="Root Admin")


@pytest.fixture
def as_admin(admin, login) -> CsrfClient:
    return login("root")


@pytest.fixture
def alice(make_user):
    return make_user("alice", "physician")


def field_errors(resp, name: str) -> list[str]:
    """The error messages shown under the form field called ``name``."""
    for chunk in re.findall(r'<div class="field [^"]*has-error[^"]*">(.*?)</div>', resp.get_data(as_text=True), re.S):
        if f'name="{name}"' in chunk:
            return [html.unescape(m) for m in re.findall(r'<p class="error">(.*?)</p>', chunk)]
    return []


def flashes(resp, category: str = "error") -> list[str]:
    return [html.unescape(m) for m in
            re.findall(rf'<div class="flash flash-{category}">(.*?)</div>', resp.get_data(as_text=True))]


def fresh_user(username: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.username == username))


def user_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User))


def is_signed_in(c: CsrfClient) -> bool:
    r = c.get("/account")
    if r.status_code == 302:
        assert urlsplit(r.location).path == "/login"
        return False
    assert r.status_code == 200
    return True


def can_sign_in(app, username: str, password: str) -> bool:
    c = CsrfClient(app.test_client())
    r = c.post("/login", {"username": username, "password": password}, token_from="/login")
    return r.status_code == 302


def new_user_form(**kw) -> dict:
    data = {"username": "carol", "full_name": "Carol Reyes", "email": "carol@example.org",
            "roles": ["radiologist"], "active": "y", "password": NEW_PASSWORD}
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


def edit_form(user: User, **kw) -> dict:
    data = {"full_name": user.full_name, "email": user.email,
            "roles": sorted(r.value for r in user.roles), "active": "y" if user.active else None}
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


# -- listing and creating -------------------------------------------------

def test_admin_lists_users_with_roles_and_status(as_admin, alice, make_user):
    bob = make_user("bob", "technologist", "radiologist")
    bob.active = False
    db.session.commit()
    r = as_admin.get("/admin/users")
    assert r.status_code == 200
    body = r.get_data(as_text=True)
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr class="[^"]*">\s*<td><a href="/admin/users/\d+">(\w+)</a>.*?</tr>', body, re.S)}
    assert set(rows) == {"root", "alice", "bob"}
    assert "Physician" in rows["alice"] and "Active" in rows["alice"]
    assert "Technologist" in rows["bob"] and "Radiologist" in rows["bob"] and "Disabled" in rows["bob"]


def test_admin_creates_a_user_who_can_then_sign_in(app, as_admin):
    r = as_admin.post("/admin/users/new", new_user_form(roles=["radiologist", "technologist"]))
    assert r.status_code == 302
    assert urlsplit(r.location).path == "/admin/users"
    carol = fresh_user("carol")
    assert carol is not None and carol.active
    assert carol.full_name == "Carol Reyes" and carol.email == "carol@example.org"
    assert carol.roles == {Role.RADIOLOGIST, Role.TECHNOLOGIST}
    assert NEW_PASSWORD not in carol.password_hash
    assert can_sign_in(app, "carol", NEW_PASSWORD)


def test_a_user_created_inactive_cannot_sign_in(app, as_admin):
    assert as_admin.post("/admin/users/new", new_user_form(active=None)).status_code == 302
    assert fresh_user("carol").active is False
    assert not can_sign_in(app, "carol", NEW_PASSWORD)


def test_a_duplicate_username_is_a_field_error_whatever_its_case(as_admin, alice):
    before = user_count()
    got = {}
    for taken in ("alice", "ALICE", "Alice", " alice "):
        r = as_admin.post("/admin/users/new", new_user_form(username=taken))
        got[taken] = (r.status_code, any("already exists" in e for e in field_errors(r, "username")))
    assert got == {t: (400, True) for t in got}
    assert user_count() == before


BAD_NEW_USER = [
    ("password", "short"),
    ("password", "aaaaaaaaaaaa"),
    ("password", ""),
    ("roles", None),
    ("roles", ["superuser"]),
    ("username", ""),
    ("username", "two words"),
    ("username", "x" * 65),
    ("email", "not-an-email"),
    ("full_name", "x" * 201),
]


def test_bad_new_user_input_is_a_field_error_and_saves_nothing(as_admin):
    before = user_count()
    got = {}
    for field, value in BAD_NEW_USER:
        r = as_admin.post("/admin/users/new", new_user_form(**{field: value}))
        got[field, repr(value)] = (r.status_code, bool(field_errors(r, field)))
    assert got == {k: (400, True) for k in got}
    assert user_count() == before


# -- editing, disabling, resetting -----------------------------------------

def test_admin_changes_roles_and_the_change_applies_to_the_open_session(as_admin, login, alice):
    theirs = login("alice")
    assert theirs.get("/requests/new").status_code == 200
    r = as_admin.post(f"/admin/users/{alice.id}", edit_form(alice, roles=["radiologist"], full_name="Alice Lee"))
    assert r.status_code == 302
    updated = fresh_user("alice")
    assert updated.roles == {Role.RADIOLOGIST}
    assert updated.full_name == "Alice Lee"
    assert theirs.get("/requests/new").status_code == 403


def test_the_edit_page_shows_the_current_roles(as_admin, alice):
    body = as_admin.get(f"/admin/users/{alice.id}").get_data(as_text=True)
    checked = set(re.findall(r'<input checked id="[^"]+" name="roles"[^>]* value="(\w+)">', body))
    assert checked == {"physician"}


def shown(body: str) -> dict:
    """What the edit form shows ticked and filled in."""
    return {"roles": set(re.findall(r'<input checked id="[^"]+" name="roles"[^>]* value="(\w+)">', body)),
            "active": re.search(r'<input checked id="active" name="active"', body) is not None,
            "full_name": re.search(r'name="full_name" type="text" value="([^"]*)"', body).group(1)}


def test_a_failed_password_reset_shows_the_account_as_it_is(as_admin, make_user):
    """Issue 13's trap: the reset form posts only its own field, and the
    edit form rebuilt from that post showed "Active" unticked: saving it
    next would have disabled the person."""
    bob = make_user("bob", "physician", "radiologist", full_name="Bob Okafor")
    r = as_admin.post(f"/admin/users/{bob.id}/password", {"reset-new_password": "short"})
    assert r.status_code == 400
    assert shown(r.get_data(as_text=True)) == {"roles": {"physician", "radiologist"}, "active": True,
                                               "full_name": "Bob Okafor"}


def test_a_refused_save_shows_what_the_admin_typed_not_a_blank_form(as_admin, admin):
    """A save the service refuses (one's own admin role) shows the values
    posted, ticked boxes included, for the admin to correct."""
    r = as_admin.post(f"/admin/users/{admin.id}", edit_form(admin, roles=["physician", "radiologist"],
                                                            full_name="Root Renamed"))
    assert r.status_code == 400
    assert shown(r.get_data(as_text=True)) == {"roles": {"physician", "radiologist"}, "active": True,
                                               "full_name": "Root Renamed"}
    assert fresh_user("root").roles == {Role.ADMIN}


def test_editing_a_user_with_no_roles_is_refused(as_admin, alice):
    r = as_admin.post(f"/admin/users/{alice.id}", edit_form(alice, roles=None))
    assert r.status_code == 400
    assert field_errors(r, "roles")
    assert fresh_user("alice").roles == {Role.PHYSICIAN}


def test_disabling_a_user_ends_their_open_session(app, as_admin, login, alice):
    theirs = login("alice")
    assert is_signed_in(theirs)
    r = as_admin.post(f"/admin/users/{alice.id}", edit_form(alice, active=None))
    assert r.status_code == 302
    assert fresh_user("alice").active is False
    assert not is_signed_in(theirs)
    assert not can_sign_in(app, "alice", PASSWORD)


def test_a_disabled_user_can_be_enabled_again(app, as_admin, alice):
    alice.active = False
    db.session.commit()
    assert as_admin.post(f"/admin/users/{alice.id}", edit_form(alice, active="y")).status_code == 302
    assert can_sign_in(app, "alice", PASSWORD)


def test_admin_resets_a_password_and_the_old_sessions_end(app, as_admin, login, alice):
    theirs = login("alice")
    r = as_admin.post(f"/admin/users/{alice.id}/password", {"reset-new_password": NEW_PASSWORD})
    assert r.status_code == 302
    assert not is_signed_in(theirs)
    assert is_signed_in(as_admin)
    assert not can_sign_in(app, "alice", PASSWORD)
    assert can_sign_in(app, "alice", NEW_PASSWORD)


def test_a_weak_reset_password_is_a_field_error(app, as_admin, login, alice):
    theirs = login("alice")
    r = as_admin.post(f"/admin/users/{alice.id}/password", {"reset-new_password": "short"})
    assert r.status_code == 400
    assert field_errors(r, "reset-new_password")
    assert is_signed_in(theirs)
    assert fresh_user("alice").check_password(PASSWORD)


def test_resetting_ones_own_password_keeps_one_signed_in(app, as_admin, admin):
    r = as_admin.post(f"/admin/users/{admin.id}/password", {"reset-new_password": NEW_PASSWORD})
    assert r.status_code == 302
    assert is_signed_in(as_admin)


def test_an_admin_cannot_disable_themselves_or_drop_their_admin_role(as_admin, admin):
    for change in ({"active": None}, {"roles": ["physician"]}):
        r = as_admin.post(f"/admin/users/{admin.id}", edit_form(admin, **change))
        assert r.status_code == 400, change
        assert flashes(r) == ["You cannot disable yourself or remove your own admin role."]
    me = fresh_user("root")
    assert me.active and me.roles == {Role.ADMIN}
    assert is_signed_in(as_admin)


def test_an_admin_can_disable_another_admin_while_one_remains(as_admin, make_user):
    other = make_user("other", "admin")
    assert as_admin.post(f"/admin/users/{other.id}", edit_form(other, active=None)).status_code == 302
    assert fresh_user("other").active is False


def test_the_last_active_admin_cannot_be_disabled_or_demoted(admin, alice):
    """From the pages the acting admin is always another admin, so the rule is
    reached through the service that the CLI and pages share."""
    for change in ({"active": False, "roles": [Role.ADMIN]}, {"active": True, "roles": [Role.PHYSICIAN]}):
        with pytest.raises(service.UserError, match="last active administrator"):
            service.update_user(admin, full_name="", email="", acting=alice, **change)
        db.session.rollback()
    me = fresh_user("root")
    assert me.active and me.roles == {Role.ADMIN}


def test_editing_a_missing_user_is_404(as_admin):
    assert as_admin.get("/admin/users/999999").status_code == 404
    assert as_admin.post("/admin/users/999999/password", {"reset-new_password": NEW_PASSWORD}).status_code == 404


@pytest.mark.parametrize("roles", [("physician",), ("technologist",), ("radiologist",),
                                   ("physician", "technologist", "radiologist")])
def test_non_admins_get_403_on_every_admin_page(login, make_user, alice, roles):
    make_user("mallory", *roles)
    c = login("mallory")
    uid = alice.id
    calls = [
        ("GET", "/admin/users", None),
        ("GET", "/admin/users/new", None),
        ("POST", "/admin/users/new", new_user_form(roles=["admin"])),
        ("GET", f"/admin/users/{uid}", None),
        ("POST", f"/admin/users/{uid}", edit_form(alice, roles=["admin"], active=None)),
        ("POST", f"/admin/users/{uid}/password", {"reset-new_password": NEW_PASSWORD}),
        ("GET", "/admin/settings/", None),
        ("POST", "/admin/settings/", {"clinic_name": "Hijacked"}),
    ]
    got = {(m, p): (c.get(p) if m == "GET" else c.post(p, data)).status_code for m, p, data in calls}
    assert got == {(m, p): 403 for m, p, _ in calls}
    assert fresh_user("carol") is None
    alice = fresh_user("alice")
    assert alice.active and alice.roles == {Role.PHYSICIAN} and alice.check_password(PASSWORD)


# -- API tokens -----------------------------------------------------------

def create_token(c: CsrfClient, name: str = "HIS interface") -> str:
    r = c.post("/account/tokens", {"token-name": name})
    assert r.status_code == 200
    m = re.search(r'<pre class="token" id="token">([^<]+)</pre>', r.get_data(as_text=True))
    assert m
    return html.unescape(m.group(1))


def api_me(app, token: str):
    return app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def test_a_token_is_shown_once_and_stored_hashed(app, login, alice):
    c = login("alice")
    token = create_token(c)
    [row] = db.session.scalars(select(ApiToken)).all()
    assert row.user_id == alice.id and row.name == "HIS interface"
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = db.session.execute(select(ApiToken.__table__)).mappings().one()
    assert not any(token in str(v) for v in stored.values())
    account = c.get("/account").get_data(as_text=True)
    assert token not in account and row.prefix in account
    r = api_me(app, token)
    assert r.status_code == 200 and r.json["username"] == "alice"


def test_revoking_a_token_stops_it_working(app, login, alice):
    c = login("alice")
    token = create_token(c)
    token_id = db.session.scalar(select(ApiToken.id))
    r = c.post(f"/account/tokens/{token_id}/delete")
    assert r.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0
    assert api_me(app, token).status_code == 401


def test_revoking_needs_a_csrf_token(app, login, alice):
    c = login("alice")
    token = create_token(c)
    token_id = db.session.scalar(select(ApiToken.id))
    assert c.client.post(f"/account/tokens/{token_id}/delete").status_code == 400
    assert api_me(app, token).status_code == 200


def test_another_users_token_id_is_404_and_the_token_survives(app, login, alice, make_user):
    make_user("bob", "radiologist")
    bobs = create_token(login("bob"), "bob's script")
    bob_token_id = db.session.scalar(select(ApiToken.id))
    c = login("alice")
    assert c.post(f"/account/tokens/{bob_token_id}/delete").status_code == 404
    assert c.post("/account/tokens/999999/delete").status_code == 404
    assert api_me(app, bobs).status_code == 200


def test_a_token_name_over_100_characters_is_refused(login, alice):
    c = login("alice")
    r = c.post("/account/tokens", {"token-name": "x" * 101})
    assert r.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0
    assert any("could not be created" in m for m in flashes(c.get("/account")))
