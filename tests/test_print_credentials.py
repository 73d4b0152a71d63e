"""Each person keeps their own credentials line (the printed report's
signature block) on their account page; the print shows it under the name
of the radiologist who signs."""

from __future__ import annotations

import html
from datetime import date

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import User


def test_a_radiologist_sets_their_credentials_and_the_print_shows_them(make_user, login, create_request):
    rad = make_user("rad", "radiologist", full_name="Dr Rita Rad")
    c = login("rad")
    r = c.post("/account/credentials", {"credentials": "  MD,   Consultant Radiologist "})
    assert r.status_code == 302 and r.location.endswith("/account")
    db.session.refresh(rad)
    assert rad.credentials == "MD, Consultant Radiologist"
    assert 'value="MD, Consultant Radiologist"' in c.get("/account").get_data(as_text=True)
    result = workflow.create_result(create_request(submit=True), rad, radiologist=rad, result_date=date(2024, 5, 2),
                                    report="Normal.")
    db.session.commit()
    printed = html.unescape(c.get(f"/results/{result.id}/print").get_data(as_text=True))
    signature = printed[printed.index('class="signature"'):]
    assert "Dr Rita Rad" in signature and "MD, Consultant Radiologist" in signature


def test_credentials_too_long_are_a_field_error_and_nothing_changes(make_user, login):
    user = make_user("doc", "physician")
    user.credentials = "MD"
    db.session.commit()
    r = login("doc").post("/account/credentials", {"credentials": "x" * 201})
    assert r.status_code == 400
    assert "Field cannot be longer than 200 characters." in html.unescape(r.get_data(as_text=True))
    db.session.refresh(user)
    assert user.credentials == "MD"


def test_credentials_need_the_form_token_and_change_only_ones_own(make_user, login):
    me, other = make_user("doc", "physician"), make_user("other", "radiologist")
    c = login("doc")
    assert c.client.post("/account/credentials", data={"credentials": "forged"}).status_code == 400
    assert c.post("/account/credentials", {"credentials": "GP", "user_id": str(other.id)}).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, me.id).credentials == "GP"
    assert db.session.get(User, other.id).credentials == ""
