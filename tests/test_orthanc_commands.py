"""``ghimaging orthanc add | push-token | list`` against a real Orthanc
1.10.1: what the installer runs, so every re-run must leave one server and
one push token."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from ghimaging import crypto
from ghimaging.auth import service as auth
from ghimaging.extensions import db
from ghimaging.models import ApiToken, OrthancServer, Role
from ghimaging.orthanc.commands import orthanc_group
from tests.support.orthanc import find_free_port


def run(app, *args: str, password: str | None = None):
    """The group as the lead will register it (``ghimaging orthanc ...``)."""
    return app.test_cli_runner().invoke(orthanc_group, list(args),
                                        input=None if password is None else password + "\n")


def add(app, orthanc, *extra: str, password: str | None = None, url: str | None = None):
    return run(app, "add", "--url", url or orthanc.url, "--user", orthanc.username, "--password-stdin", *extra,
               password=orthanc.password if password is None else password)


def rows() -> list[OrthancServer]:
    db.session.expire_all()
    return list(db.session.scalars(select(OrthancServer).order_by(OrthancServer.id)))


def one_json_line(output: str) -> dict:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return json.loads(lines[0])


def test_add_registers_the_orthanc_checked_for_real(app, orthanc):
    r = add(app, orthanc, "--json")
    assert r.exit_code == 0, r.output
    out = one_json_line(r.output)
    [row] = rows()
    assert out == {"server_id": row.id, "label": "This Orthanc", "url": orthanc.url, "action": "added",
                   "version": "1.10.1"}
    assert row.validated and row.version == "1.10.1" and row.username == orthanc.username
    assert crypto.decrypt(row.password_enc) == orthanc.password
    assert orthanc.password not in r.output


def test_a_wrong_password_is_refused_with_a_message_and_nothing_saved(app, orthanc):
    r = add(app, orthanc, password="not-the-password")
    assert r.exit_code != 0
    assert "Error:" in r.output and ("password" in r.output.lower() or "401" in r.output), r.output
    assert rows() == []


def test_an_unreachable_orthanc_is_refused_with_a_message_and_nothing_saved(app, orthanc):
    r = add(app, orthanc, url=f"http://127.0.0.1:{find_free_port()}")
    assert r.exit_code != 0
    assert "Error:" in r.output and "127.0.0.1" in r.output, r.output
    assert rows() == []


def test_running_add_again_updates_the_credentials_of_the_same_server(app, orthanc):
    assert add(app, orthanc).exit_code == 0
    [first] = rows()
    orthanc.password = "a-new-password"
    orthanc.restart(graceful=False)
    r = add(app, orthanc, "--json")
    assert r.exit_code == 0, r.output
    assert one_json_line(r.output)["action"] == "updated"
    [row] = rows()
    assert row.id == first.id and row.label == "This Orthanc" and row.validated
    assert crypto.decrypt(row.password_enc) == "a-new-password"


def test_a_refused_update_keeps_what_was_saved(app, orthanc):
    assert add(app, orthanc).exit_code == 0
    r = add(app, orthanc, password="wrong")
    assert r.exit_code != 0 and "Error:" in r.output
    [row] = rows()
    assert crypto.decrypt(row.password_enc) == orthanc.password and row.validated


def test_replace_url_moves_the_installers_server_instead_of_adding_one(app, orthanc):
    assert add(app, orthanc).exit_code == 0
    [before] = rows()
    old = orthanc.url
    orthanc.kill()
    orthanc.http_port = find_free_port()  # the installer moved Orthanc's HTTP port
    orthanc.start()
    r = add(app, orthanc, "--replace-url", old, "--json")
    assert r.exit_code == 0, r.output
    assert one_json_line(r.output)["action"] == "updated"
    [row] = rows()
    assert (row.id, row.url, row.validated) == (before.id, orthanc.url, True)
    r = add(app, orthanc, "--replace-url", old)  # the next re-run finds it at the new address
    assert r.exit_code == 0 and len(rows()) == 1


def test_without_replace_url_a_new_address_is_a_second_server(app, orthanc):
    """What --replace-url is for: the same Orthanc at a new port is otherwise
    registered twice (with a free label)."""
    assert add(app, orthanc).exit_code == 0
    old = orthanc.url
    orthanc.kill()
    orthanc.http_port = find_free_port()
    orthanc.start()
    assert add(app, orthanc).exit_code == 0
    assert [(r.label, r.url) for r in rows()] == [("This Orthanc", old), ("This Orthanc 2", orthanc.url)]


def test_a_taken_label_is_refused_with_a_message(app, orthanc):
    assert add(app, orthanc, "--label", "Main").exit_code == 0
    orthanc.kill()
    orthanc.http_port = find_free_port()
    orthanc.start()
    r = add(app, orthanc, "--label", "MAIN")
    assert r.exit_code != 0 and "already exists" in r.output, r.output
    assert len(rows()) == 1


def tokens_of(username: str) -> list[ApiToken]:
    db.session.expire_all()
    user = auth.find_user(username)
    assert user is not None
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)))


def me(app, token: str) -> int:
    return app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_push_token_makes_a_role_less_account_and_revokes_the_previous_token(app):
    r = run(app, "push-token", "--json")
    assert r.exit_code == 0, r.output
    first = one_json_line(r.output)
    assert first["user"] == "orthanc-push" and first["token"].startswith("ghi_")
    user = auth.find_user("orthanc-push")
    assert user is not None and user.roles == set() and auth.is_service_account(user)
    r = run(app, "push-token")
    assert r.exit_code == 0, r.output
    second = r.output.strip()
    assert second.startswith("ghi_") and second != first["token"]
    assert len(tokens_of("orthanc-push")) == 1
    assert me(app, first["token"]) == 401
    assert me(app, second) == 200
    assert db.session.scalar(select(func.count()).select_from(OrthancServer)) == 0  # it registered nothing


def test_push_token_keeps_the_accounts_other_tokens(app):
    """Only push tokens are replaced: a token an administrator made for the
    account by hand (a second Orthanc's push, say) keeps working."""
    assert run(app, "push-token").exit_code == 0
    other = auth.create_token(auth.find_user("orthanc-push"), "second orthanc")
    db.session.commit()
    assert run(app, "push-token").exit_code == 0
    assert sorted(t.name for t in tokens_of("orthanc-push")) == ["orthanc push", "second orthanc"]
    assert me(app, other) == 200


def test_push_token_turns_the_earlier_installers_technologist_account_role_less(app):
    old = auth.create_user("orthanc-push", "Old-installer-pw1!", [Role.TECHNOLOGIST],
                           full_name="Orthanc push (installer)")
    old_token = auth.create_token(old, "orthanc-push (installer)")
    db.session.commit()
    r = run(app, "push-token", "--json")
    assert r.exit_code == 0, r.output
    db.session.expire_all()
    user = auth.find_user("orthanc-push")
    assert user is not None and user.roles == set()
    assert me(app, old_token) == 401  # it could read every patient
    assert len(tokens_of("orthanc-push")) == 1


@pytest.mark.parametrize("username", ["orthanc-push", "alice"])
def test_push_token_refuses_a_persons_account(app, make_user, username):
    make_user(username, "physician")
    r = run(app, "push-token", "--user", username)
    assert r.exit_code != 0 and "person's account" in r.output, r.output
    assert tokens_of(username) == []
    db.session.expire_all()
    assert auth.find_user(username).roles == {Role.PHYSICIAN}


def test_list_shows_label_address_and_last_sync_never_the_password(app, orthanc):
    assert run(app, "list").output.strip() == "No Orthanc server registered."
    assert add(app, orthanc).exit_code == 0
    r = run(app, "list")
    assert r.exit_code == 0
    assert "This Orthanc" in r.output and orthanc.url in r.output and "last sync never" in r.output
    r = run(app, "list", "--json")
    [item] = one_json_line(r.output)["servers"]
    assert (item["label"], item["url"], item["last_sync_at"]) == ("This Orthanc", orthanc.url, None)
    for out in (run(app, "list").output, r.output):
        assert orthanc.password not in out and "password" not in out


def test_a_password_basic_authentication_cannot_carry_is_refused_on_add_and_on_update(app, orthanc):
    r = add(app, orthanc, password="pass—word")
    assert r.exit_code != 0 and "Latin-1" in r.output, r.output
    assert rows() == []
    assert add(app, orthanc).exit_code == 0
    r = add(app, orthanc, password="pass—word")
    assert r.exit_code != 0 and "Latin-1" in r.output, r.output
    assert crypto.decrypt(rows()[0].password_enc) == orthanc.password
