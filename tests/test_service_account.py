"""The account Orthanc's push script holds (issue 11): no role, a password
nobody knows, never a sign-in to the pages, only API tokens; shown and
edited on the Users pages as what it is, not as a person."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from ghimaging.auth import service
from ghimaging.extensions import db
from ghimaging.models import LoginThrottle, Role, User
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient


@pytest.fixture
def pusher(app) -> User:
    user = service.create_service_account("orthanc-push", "Orthanc push")
    db.session.commit()
    return user


@pytest.fixture
def admin(make_user):
    return make_user("root", "admin")


@pytest.fixture
def as_admin(login, admin) -> CsrfClient:
    return login("root")


def flashes(resp, category: str = "error") -> list[str]:
    return [html.unescape(m) for m in
            re.findall(rf'<div class="flash flash-{category}">(.*?)</div>', resp.get_data(as_text=True))]


def sign_in(app, username: str, password: str):
    c = CsrfClient(app.test_client())
    return c, c.post("/login", {"username": username, "password": password}, token_from="/login")


def bearer(app, token: str):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    return lambda method, path, **kw: client.open(path, method=method, headers=headers, **kw)


def test_a_service_account_has_no_role_and_an_unknown_password(pusher):
    assert pusher.roles == set()
    assert service.is_service_account(pusher)
    assert pusher.active and not pusher.must_change_password
    assert pusher.password_hash and not pusher.check_password("")
    assert service.find_user("ORTHANC-PUSH") is pusher


def test_its_name_follows_the_rules_for_user_names(pusher, make_user):
    make_user("alice", "physician")
    for taken in ("orthanc-push", "ALICE"):
        with pytest.raises(service.UserConflict):
            service.create_service_account(taken, "again")
    with pytest.raises(service.UserInvalid):
        service.create_service_account("has space", "x")


def test_it_cannot_sign_in_even_with_its_password_and_looks_like_a_wrong_password(app, pusher, make_user):
    """Even someone who learnt the hash's password is refused, with the one
    message every failed sign-in gets, and the failure counts for
    throttling."""
    pusher.set_password(PASSWORD)
    db.session.commit()
    make_user("alice", "physician")
    c, refused = sign_in(app, "orthanc-push", PASSWORD)
    _, wrong = sign_in(app, "alice", "not-the-password")
    assert refused.status_code == wrong.status_code == 401
    assert flashes(refused) == flashes(wrong) == ["Unknown username or wrong password."]
    assert c.get("/account").status_code == 302
    counted = db.session.scalar(select(LoginThrottle).where(LoginThrottle.username == "orthanc-push",
                                                            LoginThrottle.kind == "user"))
    assert counted is not None and counted.failures == 1


def test_its_token_wakes_a_sync_and_reads_nothing(app, pusher, orthanc_row):
    """What Orthanc's push does with it, and what a leaked copy cannot."""
    token = service.create_token(pusher, "Orthanc push")
    db.session.commit()
    call = bearer(app, token)
    woken = call("POST", f"/api/v1/orthanc/servers/{orthanc_row.id}/wake")
    assert (woken.status_code, woken.get_json()["server_id"]) == (202, orthanc_row.id)
    assert call("POST", f"/api/v1/orthanc/servers/{orthanc_row.id + 1000}/wake").status_code == 404
    for path in ("/api/v1/patients", "/api/v1/requests", "/api/v1/studies", "/api/v1/orthanc/servers"):
        r = call("GET", path)
        assert (r.status_code, r.get_json()["error"]) == (403, "forbidden"), path


def test_its_token_reaches_its_own_account_and_no_clinical_write(app, pusher):
    token = service.create_token(pusher, "Orthanc push")
    db.session.commit()
    call = bearer(app, token)
    me = call("GET", "/api/v1/me")
    assert me.status_code == 200
    assert me.get_json() == {"id": pusher.id, "username": "orthanc-push", "roles": []}
    refused = call("POST", "/api/v1/patients", json={"puid": "X1", "family_name": "Doe", "given_name": "Jo"})
    assert (refused.status_code, refused.get_json()["error"]) == (403, "forbidden")
    assert not pusher.can("view")


def test_a_disabled_service_account_token_stops_and_works_again_when_enabled(app, pusher):
    """Its token lives in Orthanc's configuration: disabling stops it, and
    enabling again must not mean writing a new one there."""
    token = service.create_token(pusher, "Orthanc push")
    service.set_service_account_active(pusher, False)
    db.session.commit()
    call = bearer(app, token)
    assert call("GET", "/api/v1/me").status_code == 401
    service.set_service_account_active(pusher, True)
    db.session.commit()
    assert call("GET", "/api/v1/me").status_code == 200


def test_the_service_layer_refuses_to_turn_it_into_a_person(pusher, admin):
    with pytest.raises(service.UserConflict) as roles:
        service.update_user(pusher, full_name="", email="", roles=[Role.PHYSICIAN], active=True, acting=admin)
    with pytest.raises(service.UserConflict) as password:
        service.reset_password(pusher, "An0ther-long-secret", acting=admin)
    with pytest.raises(service.UserConflict):
        service.set_service_account_active(admin, False)
    assert roles.value.code == password.value.code == "service_account"
    db.session.rollback()
    assert pusher.roles == set() and not pusher.check_password("An0ther-long-secret")


def test_the_users_page_shows_it_as_a_service_account(as_admin, pusher):
    page = as_admin.get("/admin/users").get_data(as_text=True)
    row = re.search(r"<tr[^>]*>\s*<td><a[^>]*>orthanc-push</a>.*?</tr>", page, re.S)
    assert row is not None
    assert "Service account" in row.group(0)


def test_its_edit_page_offers_only_active_and_tokens(as_admin, pusher):
    page = as_admin.get(f"/admin/users/{pusher.id}").get_data(as_text=True)
    assert 'name="active"' in page and "Service account" in page
    for person_only in ('name="roles"', 'name="reset-new_password"', 'name="full_name"', 'name="email"'):
        assert person_only not in page


def test_saving_it_changes_only_whether_it_is_active(as_admin, pusher):
    """A post carrying a person's fields (roles) changes nothing but Active."""
    r = as_admin.post(f"/admin/users/{pusher.id}", {"roles": ["admin"], "full_name": "Someone"},
                      token_from=f"/admin/users/{pusher.id}")
    assert r.status_code == 302
    db.session.expire_all()
    assert pusher.roles == set() and not pusher.active and pusher.full_name == "Orthanc push"
    as_admin.post(f"/admin/users/{pusher.id}", {"active": "y"}, token_from=f"/admin/users/{pusher.id}")
    db.session.expire_all()
    assert pusher.active


def test_a_password_reset_of_it_is_refused_with_a_message(as_admin, pusher):
    r = as_admin.post(f"/admin/users/{pusher.id}/password", {"reset-new_password": "An0ther-long-secret"},
                      token_from="/admin/users/new", follow_redirects=True)
    assert service.SERVICE_ACCOUNT_FIXED in flashes(r)
    db.session.expire_all()
    assert not pusher.check_password("An0ther-long-secret") and not pusher.must_change_password


def test_an_admin_makes_and_revokes_its_tokens(app, as_admin, pusher):
    r = as_admin.post(f"/admin/users/{pusher.id}/tokens", {"token-name": "Orthanc on the Pi"},
                      token_from=f"/admin/users/{pusher.id}")
    assert r.status_code == 200
    token = html.unescape(re.search(r'<pre class="token" id="token">([^<]+)</pre>', r.get_data(as_text=True)).group(1))
    # How to use it, as markup (it showed "<code>Authorization: …" as text).
    assert f"<code>Authorization: Bearer {html.escape(token[:10])}…</code>" in r.get_data(as_text=True)
    call = bearer(app, token)
    assert call("GET", "/api/v1/me").get_json()["username"] == "orthanc-push"
    page = as_admin.get(f"/admin/users/{pusher.id}").get_data(as_text=True)
    assert "Orthanc on the Pi" in page and token[:10] in page and token not in page
    token_id = pusher.tokens[0].id
    r = as_admin.post(f"/admin/users/{pusher.id}/tokens/{token_id}/delete", token_from=f"/admin/users/{pusher.id}")
    assert r.status_code == 302
    assert call("GET", "/api/v1/me").status_code == 401


def test_an_admin_cannot_make_or_revoke_a_persons_tokens(app, as_admin, make_user):
    alice = make_user("alice", "physician")
    theirs = service.create_token(alice, "alice's script")
    db.session.commit()
    made = as_admin.post(f"/admin/users/{alice.id}/tokens", {"token-name": "x"}, token_from="/admin/users/new")
    revoked = as_admin.post(f"/admin/users/{alice.id}/tokens/{alice.tokens[0].id}/delete",
                            token_from="/admin/users/new")
    assert (made.status_code, revoked.status_code) == (409, 404)
    db.session.expire_all()
    assert [t.name for t in alice.tokens] == ["alice's script"]
    assert bearer(app, theirs)("GET", "/api/v1/me").status_code == 200
