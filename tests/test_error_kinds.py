"""The core's errors are the typed kinds of ghimaging/exceptions.py (issue
14): the views catch them by their area's name, and whatever they do not
catch is answered by the one mapping (409 a conflict, 422 invalid input,
502 an upstream failure)."""

from __future__ import annotations

import pytest

from ghimaging import crypto
from ghimaging.auth import service
from ghimaging.exceptions import Conflict, Invalid, UpstreamFailure
from ghimaging.extensions import db
from ghimaging.models import Role
from ghimaging.worklists import UnencodableError, dicomfile, templates
from ghimaging.worklists.errors import RenderError
from ghimaging.worklists.render import compile_template
from tests.support.factories import PASSWORD


def test_a_taken_username_is_a_conflict_and_a_bad_one_invalid_input(app, make_user):
    make_user("alice", "physician")
    with pytest.raises(service.UserError) as taken:
        service.create_user("ALICE", PASSWORD, [Role.PHYSICIAN])
    assert isinstance(taken.value, Conflict) and taken.value.code == "duplicate"
    with pytest.raises(service.UserError) as bad:
        service.create_user("has space", PASSWORD, [Role.PHYSICIAN])
    assert isinstance(bad.value, Invalid) and set(bad.value.fields) == {"username"}
    with pytest.raises(service.UserInvalid) as weak:
        service.create_user("bob", "short", [Role.PHYSICIAN])
    assert set(weak.value.fields) == {"password"}


def test_the_last_administrator_is_a_conflict(app, make_user):
    admin = make_user("root", "admin")
    other = make_user("alice", "admin")
    service.update_user(other, full_name="", email="", roles=[Role.PHYSICIAN], active=True, acting=admin)
    with pytest.raises(service.UserConflict) as err:
        service.update_user(admin, full_name="", email="", roles=[Role.PHYSICIAN], active=True, acting=other)
    assert err.value.code == "last_admin"


def test_a_wrong_current_password_names_its_field(app, make_user):
    alice = make_user("alice", "physician")
    with pytest.raises(service.UserInvalid) as err:
        service.change_own_password(alice, "not it", "An0ther-long-secret")
    assert err.value.fields == {"current_password": "This is not your current password."}


def test_template_errors_are_invalid_input_or_a_taken_name(app):
    templates.load_shipped()
    db.session.commit()
    with pytest.raises(templates.TemplateError) as taken:
        templates.save(None, name="general", body="${PatientName}", charset="ISO_IR 192", encoding="utf-8")
    assert isinstance(taken.value, Conflict) and (taken.value.code, taken.value.field) == ("duplicate", "name")
    with pytest.raises(templates.TemplateError) as broken:
        templates.save(None, name="broken", body="${__import__('os')}", charset="ISO_IR 192", encoding="utf-8")
    assert isinstance(broken.value, Invalid) and broken.value.field == "body" and set(broken.value.fields) == {"body"}


def test_a_worklist_file_that_cannot_be_made_is_invalid_input_and_still_a_value_error():
    with pytest.raises(RenderError) as render:
        compile_template("${__import__('os')}")
    with pytest.raises(dicomfile.DumpError) as dump:
        dicomfile.parse("not a dump line")
    for exc in (render.value, dump.value):
        assert isinstance(exc, Invalid) and isinstance(exc, ValueError)
    assert str(dump.value).startswith("line 1: ")
    assert issubclass(UnencodableError, Invalid) and issubclass(UnencodableError, ValueError)
    assert UnencodableError.code == "worklist_charset"


def test_an_unreadable_stored_password_is_an_upstream_failure_on_a_page(app):
    assert isinstance(crypto.CredentialError("x"), UpstreamFailure)

    def boom() -> str:
        crypto.decrypt("not a token")
        return "unreachable"

    app.add_url_rule("/test-credential", "test_credential", boom)
    r = app.test_client().get("/test-credential")
    assert r.status_code == 502
    assert "cannot be decrypted" in r.get_data(as_text=True)
