"""One transaction owner (issue 14): the services flush, the page or API
call commits once, and a change that fails part-way leaves nothing of
itself, in the database or on disk (worklist files, report images).

Also the one caption rule (an error, whichever way a caption arrives) and
the typed errors' answers that only these areas give."""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ghimaging.exceptions import Conflict, Invalid, UpstreamFailure
from ghimaging.extensions import db
from ghimaging.imaging import checks, reporting, workflow
from ghimaging.models import ImagingRequest, RequestEvent, Result, ResultImage
from tests.support.factories import png_bytes


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def image_files(app) -> list[str]:
    folder = Path(app.config["RESULT_IMAGE_DIR"])
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def wl_file(app, req: ImagingRequest) -> Path:
    return Path(app.config["WORKLIST_DIR"]) / f"{req.accession_number}.wl"


@pytest.fixture
def rad_api(api):
    return api("radiologist")


# -- the API's create-and-finalise is one transaction ------------------------------

def test_a_result_whose_finalising_fails_leaves_nothing_of_the_result(app, api, rad_api, catalog, create_patient,
                                                                       monkeypatch):
    """POST .../result with final: the second step fails after the first
    was written and flushed; the answer is the failure's, and the request
    is as it was: requested, no result, no 'complete' event, its worklist
    file still offered with the same bytes."""
    doc = api("physician")
    patient = create_patient()
    r = doc.post("/api/v1/requests", json={"patient_id": patient.id, "test_code": "XR-CHEST", "submit": True})
    assert r.status_code == 201, r.get_data(as_text=True)
    req = db.session.get(ImagingRequest, r.get_json()["id"])
    wl = wl_file(app, req)
    before = wl.read_bytes()
    real = reporting.finalise_result
    reached: list[int] = []

    def finalise_then_fail(result: Result, user) -> Result:
        real(result, user)
        reached.append(result.id)  # the result row exists in the transaction
        raise Conflict("Simulated failure of the second step.", code="simulated")

    monkeypatch.setattr(reporting, "finalise_result", finalise_then_fail)
    r = rad_api.post(f"/api/v1/requests/{req.id}/result", json={"report": "Normal.", "final": True})
    assert (r.status_code, r.get_json()["error"]) == (409, "simulated")
    assert reached and reached[0] is not None
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    assert req.state == "requested" and req.result is None
    assert count(Result) == 0
    assert [e.action for e in req.events] == ["create", "submit"]
    assert wl.read_bytes() == before  # removed by the 'complete' and put back by the rollback
    monkeypatch.undo()
    r = rad_api.post(f"/api/v1/requests/{req.id}/result", json={"report": "Normal.", "final": True})
    assert r.status_code == 201 and r.get_json()["result"]["final"] is True
    assert not wl.exists()


def test_an_order_submitted_into_a_refusing_folder_leaves_no_request(app, api, catalog, create_patient, tmp_path):
    """POST /requests with submit: the requests are inserted (flushed, with
    their numbers) before the worklist file is written; the folder refuses
    it, and no draft, event or number stays."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    app.config["WORKLIST_DIR"] = str(blocker)
    doc = api("physician")
    patient = create_patient()
    r = doc.post("/api/v1/requests", json={"patient_id": patient.id, "test_codes": ["XR-CHEST", "US-ABD"],
                                           "submit": True})
    assert (r.status_code, r.get_json()["error"]) == (503, "worklist_unwritable")
    db.session.expire_all()
    assert count(ImagingRequest) == 0 and count(RequestEvent) == 0


def test_a_service_left_uncommitted_leaves_no_files(app, create_request, make_user):
    """The boundary decides: images stored for a result that is rolled back
    are removed; committed ones stay."""
    rad = make_user("rad1", "radiologist")
    req = create_request(submit=True)
    reporting.create_result(req, rad, radiologist=None, result_date=date(2024, 5, 2), report="x",
                            new_images=[reporting.NewImage(png_bytes(), "a.png", "A")])
    assert len(image_files(app)) == 2  # the image and its thumbnail, written before the commit
    db.session.rollback()
    assert image_files(app) == [] and count(Result) == 0
    reporting.create_result(req, rad, radiologist=None, result_date=date(2024, 5, 2), report="x",
                            new_images=[reporting.NewImage(png_bytes(), "a.png", "A")])
    db.session.commit()
    assert len(image_files(app)) == 2 and count(ResultImage) == 1


# -- one caption rule ---------------------------------------------------------------

LONG = "x" * (checks.CAPTION_MAX + 1)


def test_a_long_caption_is_the_same_error_for_a_new_image_and_an_edited_one(app, create_request, make_user):
    rad = make_user("rad2", "radiologist")
    req = create_request(submit=True)
    with pytest.raises(workflow.ValidationError) as new:
        reporting.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report="x",
                                new_images=[reporting.NewImage(png_bytes(), "a.png", LONG)])
    db.session.rollback()
    result = reporting.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report="x",
                                     new_images=[reporting.NewImage(png_bytes(), "a.png", "A")])
    db.session.commit()
    img = result.images[0]
    with pytest.raises(workflow.ValidationError) as edited:
        reporting.update_result(result, rad, radiologist=rad, result_date=result.result_date, report="x",
                                report_style=result.report_style, captions={img.id: LONG})
    db.session.rollback()
    expected = f"the caption is longer than {checks.CAPTION_MAX} characters"
    assert expected in new.value.errors["images"] and expected in edited.value.errors["images"]
    db.session.refresh(img)
    assert img.caption == "A"  # not cut to 500 characters in silence


def test_the_edit_page_refuses_a_long_caption_instead_of_cutting_it(app, create_request, make_user, login):
    rad = make_user("rad3", "radiologist")
    req = create_request(submit=True)
    result = reporting.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2), report="x",
                                     new_images=[reporting.NewImage(png_bytes(), "a.png", "A")])
    db.session.commit()
    img = result.images[0]
    url = f"/results/{result.id}/edit"
    browser = login("rad3")
    from ghimaging.imaging import drafts

    r = browser.post(url, {"radiologist": rad.id, "result_date": "2024-05-02", "report_style": "with_images",
                           "report": "Changed.", f"caption-{img.id}": LONG,
                           "version": drafts.version_of(result)},  # opened on the saved report (not stale)
                     token_from=url)
    assert r.status_code == 400
    assert f"the caption is longer than {checks.CAPTION_MAX} characters" in html.unescape(r.get_data(as_text=True))
    db.session.expire_all()
    img = db.session.get(ResultImage, img.id)
    assert img.caption == "A" and img.result.report == "x"


def test_a_key_image_caption_follows_the_same_rule():
    with pytest.raises(workflow.ValidationError) as exc:
        checks.caption(LONG, "The key image")
    assert exc.value.errors == {"images": f"The key image: the caption is longer than {checks.CAPTION_MAX} characters."}
    assert checks.caption("  ok  ", "x") == "ok"


# -- typed errors --------------------------------------------------------------------

def test_the_areas_errors_are_of_the_typed_kinds():
    from ghimaging.catalog.service import CatalogError, DuplicateCode
    from ghimaging.imaging.images import ImageError
    from ghimaging.patients.service import DuplicatePuid, PatientError
    from ghimaging.settings.service import SettingsError
    from ghimaging.uploads.archive import LimitExceeded
    from ghimaging.uploads.service import UploadRefused

    assert issubclass(workflow.TransitionError, Conflict)
    assert issubclass(workflow.ValidationError, Invalid) and issubclass(workflow.WorklistRefused, Invalid)
    assert issubclass(workflow.WorklistUnwritable, UpstreamFailure)
    for kind in (PatientError, CatalogError, ImageError, SettingsError, LimitExceeded, UploadRefused):
        assert issubclass(kind, Invalid), kind
    assert issubclass(DuplicatePuid, Conflict) and issubclass(DuplicateCode, Conflict)
    assert DuplicatePuid({"puid": "taken"}).code == "conflict" == DuplicateCode("taken", "code").code


def test_a_duplicate_puid_with_another_bad_field_is_422_with_both(api, create_patient):
    """Only a PUID clash alone is a conflict; with other fields wrong it is
    the form's list of field errors."""
    p = create_patient(puid="DUP-1")
    r = api("physician").post("/api/v1/patients", json={"puid": p.puid, "family_name": "", "sex": "F"})
    assert r.status_code == 422 and set(r.get_json()["fields"]) == {"puid", "family_name"}
    r = api("physician").post("/api/v1/patients", json={"puid": p.puid, "family_name": "Other", "sex": "F"})
    assert (r.status_code, r.get_json()["error"]) == (409, "conflict")
