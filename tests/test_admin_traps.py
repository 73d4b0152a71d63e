"""Issue 13's admin traps: a failed action never changes what the other
forms of the page show or where they post, and the first administrator's
printed password never stays in use.

Pages with several forms (a person's account page, a user's admin page)
are shown again after one form failed, at that form's address: each
other form must show the account as stored and still post to its own
address. These tests read the forms the way a browser submits them
(ticked boxes, filled fields, the form's action resolved against the page's
address) and submit them."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import Role, User
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient

NEW = "Fresh-passw0rd-42"


class _Forms(HTMLParser):
    """Each <form>: its action and what a browser would submit of it."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": {}, "names": set()})
        elif not self.forms:
            return
        elif tag == "input" and a.get("name"):
            form = self.forms[-1]
            form["names"].add(a["name"])
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    form["fields"].setdefault(a["name"], []).append(a.get("value") or "y")
            else:
                form["fields"].setdefault(a["name"], []).append(a.get("value") or "")
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            self.forms[-1]["names"].add(a["name"])
        elif tag == "option" and self._select and "selected" in a:
            self.forms[-1]["fields"][self._select] = [a.get("value") or ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def form_with(resp, page_path: str, field: str) -> tuple[str, dict]:
    """The form holding ``field``: where a browser posts it (its action
    resolved against the page's address; no action posts to the page's
    own address) and its fields as submitted."""
    parser = _Forms()
    parser.feed(resp.get_data(as_text=True))
    found = [f for f in parser.forms if field in f["names"]]
    assert len(found) == 1, f"{len(found)} forms with {field}"
    target = urlsplit(urljoin("http://localhost" + page_path, found[0]["action"] or "")).path
    return target, found[0]["fields"]


def fresh(username: str) -> User:
    db.session.expire_all()
    user = db.session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


@pytest.fixture
def as_admin(make_user, login) -> CsrfClient:
    make_user("root", "admin", full_name="Root Admin")
    return login("root")


# -- a user's admin page: edit, reset password, end sessions -------------------

def test_after_a_failed_reset_the_user_form_shows_the_account_and_saves_where_it_should(as_admin, make_user):
    bob = make_user("bob", "physician", "radiologist", full_name="Bob Okafor")
    failed_at = f"/admin/users/{bob.id}/password"
    r = as_admin.post(failed_at, {"reset-new_password": "short"})
    assert r.status_code == 400
    target, fields = form_with(r, failed_at, "full_name")
    assert fields.get("active") == ["y"]  # "Active" ticked: the account is active
    assert sorted(fields["roles"]) == ["physician", "radiologist"]
    assert fields["full_name"] == ["Bob Okafor"]
    # The admin now saves that form as shown, with a new name: it must reach
    # the edit view, not the reset that just failed.
    assert target == f"/admin/users/{bob.id}"
    fields["full_name"] = ["Bob A. Okafor"]
    saved = as_admin.client.post(target, data=fields)
    assert saved.status_code == 302
    bob = fresh("bob")
    assert (bob.full_name, bob.active, bob.roles) == ("Bob A. Okafor", True, {Role.PHYSICIAN, Role.RADIOLOGIST})


def test_after_a_failed_reset_the_reset_and_sessions_forms_post_to_their_own_addresses(as_admin, make_user):
    bob = make_user("bob", "physician")
    failed_at = f"/admin/users/{bob.id}/password"
    r = as_admin.post(failed_at, {"reset-new_password": "short"})
    assert form_with(r, failed_at, "reset-new_password")[0] == failed_at
    assert f'action="/admin/users/{bob.id}/sessions/end"' in r.get_data(as_text=True)


def test_a_refused_edit_leaves_the_reset_form_empty_and_the_account_unchanged(as_admin, make_user):
    """The failed form shows what the admin typed (to correct it); nothing of
    it is saved, and the reset form beside it carries nothing."""
    bob = make_user("bob", "physician", full_name="Bob Okafor")
    at = f"/admin/users/{bob.id}"
    r = as_admin.post(at, {"full_name": "Bob Typed", "email": "not-an-address"})  # no role, bad email
    assert r.status_code == 400
    _target, reset = form_with(r, at, "reset-new_password")
    assert reset["reset-new_password"] == [""]
    bob = fresh("bob")
    assert (bob.full_name, bob.active, bob.roles) == ("Bob Okafor", True, {Role.PHYSICIAN})


# -- one's own account page: credentials, language, password -------------------

@pytest.fixture
def alice(make_user, login) -> CsrfClient:
    user = make_user("alice", "radiologist")
    user.credentials = "MD, Radiologist"
    db.session.commit()
    return login("alice")


def test_after_a_failed_credentials_save_the_password_form_changes_the_password_only(app, alice):
    failed_at = "/account/credentials"
    r = alice.post(failed_at, {"credentials": "x" * 201})
    assert r.status_code == 400
    target, fields = form_with(r, failed_at, "new_password")
    assert target == "/account"
    fields.update(current_password=[PASSWORD], new_password=[NEW], confirm=[NEW])
    done = alice.client.post(target, data=fields)
    assert done.status_code == 302
    user = fresh("alice")
    assert user.check_password(NEW)
    assert user.credentials == "MD, Radiologist"  # not emptied by a post that did not carry it


def test_after_a_failed_credentials_save_the_other_forms_show_what_is_stored(app, alice):
    user = fresh("alice")
    user.language = "de"
    db.session.commit()
    failed_at = "/account/credentials"
    r = alice.post(failed_at, {"credentials": "x" * 201})
    assert r.status_code == 400
    target, fields = form_with(r, failed_at, "language")
    assert (target, fields["language"]) == ("/account/language", ["de"])
    assert form_with(r, failed_at, "current_password")[1]["current_password"] == [""]


def test_after_a_failed_language_save_the_credentials_show_what_is_stored(app, alice):
    failed_at = "/account/language"
    r = alice.post(failed_at, {"language": "xx"})
    assert r.status_code == 400
    target, fields = form_with(r, failed_at, "credentials")
    assert (target, fields["credentials"]) == ("/account/credentials", ["MD, Radiologist"])
    assert form_with(r, failed_at, "new_password")[0] == "/account"
    assert fresh("alice").language is None


# -- the printed first administrator's password --------------------------------

def _printed(app, password: str) -> None:
    """What ``ghimaging init --create-admin`` leaves in the instance folder."""
    from pathlib import Path

    folder = Path(app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "initial-admin-password").write_text(password + "\n", encoding="utf-8")


def test_a_first_admin_from_before_the_flag_must_still_replace_the_printed_password(app, make_user):
    """An install made before migration 0010: its first admin's flag was set
    false with every other account's, and the printed password is still in
    the instance folder and still works. Signing in with it leads to
    choosing one's own, from every page."""
    make_user("admin", "admin", full_name="Administrator")  # must_change_password False, as 0010 left it
    _printed(app, PASSWORD)
    c = CsrfClient(app.test_client())
    r = c.post("/login", {"username": "admin", "password": PASSWORD}, token_from="/login")
    assert r.status_code == 302
    for page in ("/", "/admin/users", "/account"):
        assert urlsplit(c.get(page).location).path == "/account/password", page
    assert fresh("admin").must_change_password
    # Once chosen, the printed file (still there) no longer matters.
    chosen = c.post("/account/password", {"current_password": PASSWORD, "new_password": NEW, "confirm": NEW},
                    token_from="/account/password")
    assert chosen.status_code == 302
    again = CsrfClient(app.test_client())
    assert again.post("/login", {"username": "admin", "password": NEW}, token_from="/login").status_code == 302
    assert again.get("/admin/users").status_code == 200


def test_another_password_than_the_printed_one_is_not_affected(app, make_user):
    make_user("admin", "admin", full_name="Administrator")
    _printed(app, "not-the-password-1")
    c = CsrfClient(app.test_client())
    assert c.post("/login", {"username": "admin", "password": PASSWORD}, token_from="/login").status_code == 302
    assert c.get("/admin/users").status_code == 200
    assert not fresh("admin").must_change_password
