"""The reporting desk never puts an old text over a later saved report: a
draft typed before someone's save is shown, not restored; a save of a desk
opened on an older version is refused with the typed text kept; an autosave
typed over an older version is not kept (review finding: radiologist B's
"FRACTURE" silently replaced by A's old draft)."""
# ruff: noqa: F811  (the desk's fixtures, imported from tests.test_desk)

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.imaging import drafts
from ghimaging.models import ImagingRequest, ReportDraft, Result
from tests.test_desk import (  # noqa: F401
    desk_of,
    editor_text,
    opened,
    page,
    rad,
    reader,
    req,
    result_form,
    send_draft,
    the_draft,
)

OLD = "A: old draft, no findings"
FINDING = "B: FRACTURE of left radius"


@pytest.fixture
def bee(make_user, login):
    user = make_user("radb", "radiologist", full_name="Dr Bea Second")
    return user, login("radb")


def saved_report(req) -> str:
    db.session.expire_all()
    return db.session.get(ImagingRequest, req.id).result.report


def test_an_old_draft_is_shown_not_restored_over_a_later_saved_report(app, reader, req, rad, bee):
    b, b_page = bee
    assert send_draft(reader, req, {"text": OLD}).status_code == 200
    new = f"/requests/{req.id}/result"
    assert b_page.post(new, result_form(b, FINDING), token_from=new).status_code == 302

    edit = desk_of(req)
    body = page(reader.get(edit))
    assert editor_text(body) == FINDING, "the editor keeps the saved report"
    assert "was restored" not in body
    assert "written before Dr Bea Second's save of this report" in body and OLD in body  # to read and copy
    # A saves the page as it shows it: B's finding stays.
    r = reader.post(edit, result_form(rad, editor_text(body), version=opened(reader, edit)), token_from=edit)
    assert r.status_code == 302
    assert saved_report(req) == FINDING


def test_a_draft_left_behind_by_a_race_is_not_restored(app, reader, req, rad):
    """An autosave committed after the save cleared the drafts (or a draft
    from before the result existed) keeps its old version: shown, not restored."""
    new = f"/requests/{req.id}/result"
    assert reader.post(new, result_form(rad, FINDING), token_from=new).status_code == 302
    result = db.session.scalar(select(Result))
    for based_on in (None, result.updated_at - timedelta(microseconds=1)):
        db.session.add(ReportDraft(request_id=req.id, user_id=rad.id, text=OLD, based_on=based_on))
        db.session.commit()
        body = page(reader.get(f"/results/{result.id}/edit"))
        assert editor_text(body) == FINDING and "was restored" not in body and "written before" in body
        db.session.execute(ReportDraft.__table__.delete())
        db.session.commit()
    # A draft typed over the saved version is the user's newer text: restored.
    assert send_draft(reader, req, {"text": FINDING + " More."}).status_code == 200
    body = page(reader.get(f"/results/{result.id}/edit"))
    assert editor_text(body) == FINDING + " More." and "was restored" in body


@pytest.mark.parametrize("stale", ["opened", "", None, "2001-01-01T00:00:00", "garbage"])
def test_a_save_over_an_older_version_is_refused_and_nothing_is_lost(app, reader, req, rad, bee, stale):
    b, b_page = bee
    new = f"/requests/{req.id}/result"
    assert reader.post(new, result_form(rad, "First words."), token_from=new).status_code == 302
    edit = desk_of(req)
    a_version = opened(reader, edit)
    assert b_page.post(edit, result_form(b, FINDING, version=opened(b_page, edit)), token_from=edit).status_code == 302

    data = result_form(rad, "A: my rewrite")
    if stale is not None:
        data["version"] = a_version if stale == "opened" else stale
    r = reader.post(edit, data, token_from=edit)
    assert r.status_code == 409
    body = page(r)
    assert saved_report(req) == FINDING, "B's finding is not replaced"
    assert editor_text(body) == "A: my rewrite", "A's text stays in the form"
    assert "Dr Bea Second saved this report after you opened it" in body
    assert FINDING in body, "the saved report is shown to compare"
    # Having seen it, A may knowingly replace it: the refused page carries the saved version.
    again = opened_from(body)
    assert again == drafts.version_of(db.session.get(ImagingRequest, req.id).result) != a_version
    r = reader.post(edit, result_form(rad, "A: my rewrite, B's fracture noted.", version=again), token_from=edit)
    assert r.status_code == 302 and saved_report(req) == "A: my rewrite, B's fracture noted."


def opened_from(body: str) -> str:
    import re
    m = re.search(r'<input[^>]*name="version"[^>]*value="([^"]*)"', body)
    assert m
    return m.group(1)


def test_a_new_result_posted_after_someone_else_wrote_one_is_refused(app, reader, req, rad, bee):
    b, b_page = bee
    new = f"/requests/{req.id}/result"
    token_page = reader.token(new)
    assert b_page.post(new, result_form(b, FINDING), token_from=new).status_code == 302
    r = reader.client.post(new, data={**result_form(rad, "A: nothing found"), "csrf_token": token_page,
                                      "version": ""})
    assert r.status_code == 409
    body = page(r)
    assert saved_report(req) == FINDING and editor_text(body) == "A: nothing found"
    result = db.session.scalar(select(Result))
    assert f'action="/results/{result.id}/edit"' in body, "saving again goes to the saved result"


def test_an_autosave_typed_over_an_older_version_is_not_kept(app, reader, req, rad, bee):
    # Typed on the new-result desk; the result is saved (by this user) before it arrives.
    new = f"/requests/{req.id}/result"
    assert reader.post(new, result_form(rad, FINDING), token_from=new).status_code == 302
    r = send_draft(reader, req, {"text": "late autosave"}, version="")
    assert r.status_code == 409 and r.get_json()["error"] == "conflict" and the_draft(req, rad) is None
    # Typed on the edit desk of an older version; saved since by the same user with the same text.
    edit = desk_of(req)
    v1 = opened(reader, edit)
    assert send_draft(reader, req, {"text": FINDING + " typing"}, version=v1).status_code == 200
    assert reader.post(edit, result_form(rad, FINDING, version=v1), token_from=edit).status_code == 302
    assert the_draft(req, rad) is None
    for version in (v1, "", "2999-01-01T00:00:00", "garbage"):
        r = send_draft(reader, req, {"text": FINDING + " typing, in flight"}, version=version)
        assert r.status_code == 409, version
        assert the_draft(req, rad) is None
    assert "was restored" not in page(reader.get(edit))
    # Another radiologist's save makes this user's open desk stale too.
    b, b_page = bee
    v2 = opened(reader, edit)
    assert b_page.post(edit, result_form(b, FINDING + " B.", version=opened(b_page, edit)),
                       token_from=edit).status_code == 302
    r = send_draft(reader, req, {"text": "A over B"}, version=v2)
    assert r.status_code == 409 and "Dr Bea Second" in r.get_json()["message"]
    assert the_draft(req, rad) is None
