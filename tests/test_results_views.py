"""The result pages: generate with images, image serving, print page, finalise, addenda."""

from __future__ import annotations

import html
import io
import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.imaging import drafts, workflow
from ghimaging.imaging.images import thumb_name
from ghimaging.models import Result, ResultImage
from tests.support.factories import png_bytes


@pytest.fixture
def rad(make_user):
    return make_user("rad", "radiologist", full_name="Dr Rita Rad")


@pytest.fixture
def reader(rad, login):
    """A radiologist signed in, CSRF on."""
    return login("rad")


@pytest.fixture
def req(create_request, create_patient):
    return create_request(create_patient(family_name="Nakamura", given_name="Ken"), submit=True,
                          clinical_context="Trauma")


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def image_files(app) -> list[str]:
    folder = Path(app.config["RESULT_IMAGE_DIR"])
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def result_form(rad, style="with_images", report="Fracture of the left 5th rib.", **images):
    data = {"radiologist": rad.id, "result_date": "2024-05-02", "report_style": style, "report": report}
    data.update(images)
    return data


def make_result(req, rad, style="with_images", *captions: str) -> Result:
    imgs = [workflow.NewImage(png_bytes(), f"img{i}.png", c) for i, c in enumerate(captions)]
    result = workflow.create_result(req, rad, radiologist=rad, result_date=date(2024, 5, 2),
                                    report="Normal study.", report_style=style, new_images=imgs)
    db.session.commit()
    return result


def img_srcs(body: str, cls: str) -> list[str]:
    section = body[body.index(f'class="{cls}"'):]
    return re.findall(r'<img src="([^"]+)"', section)


# -- generate -----------------------------------------------------------------

def test_generate_result_with_two_images_and_captions(app, reader, req, rad):
    url = f"/requests/{req.id}/result"
    form = page(reader.get(url))
    assert 'enctype="multipart/form-data"' in form and 'name="new_images-0-file"' in form
    r = reader.post(url, result_form(rad, **{
        "new_images-0-file": (png_bytes(size=(900, 700)), "ap.png"), "new_images-0-caption": "AP view",
        "new_images-1-file": (png_bytes(fmt="JPEG"), "oblique.jpg"), "new_images-1-caption": "Oblique",
        "new_images-2-caption": "caption without a file is ignored",
    }), token_from=url)
    assert r.status_code == 302, page(r)[:2000]
    result = db.session.scalar(select(Result))
    assert r.location.endswith(f"/results/{result.id}")
    db.session.refresh(req)
    assert req.state == "requested" and not result.is_final  # a preliminary result does not close the request
    assert (result.radiologist_id, result.result_date, result.report) == \
        (rad.id, date(2024, 5, 2), "Fracture of the left 5th rib.")
    assert [(i.original_name, i.caption, i.content_type) for i in result.images] == [
        ("ap.png", "AP view", "image/png"), ("oblique.jpg", "Oblique", "image/jpeg")]
    assert image_files(app) == sorted([i.stored_name for i in result.images] +
                                      [thumb_name(i.stored_name) for i in result.images])
    body = page(reader.get(r.location))
    assert f"Preliminary result saved for request {req.accession_number}" in body
    for img in result.images:
        assert f'src="/results/images/{thumb_name(img.stored_name)}"' in body
    assert "AP view" in body and "Oblique" in body


def test_the_radiologist_defaults_to_the_current_user(reader, req, rad):
    body = page(reader.get(f"/requests/{req.id}/result"))
    assert re.search(rf'<option selected value="{rad.id}">|<option value="{rad.id}" selected>', body)


@pytest.mark.parametrize("name,make,message", [
    ("notes.png", lambda: io.BytesIO(b"this is not an image\n" * 20), "not a readable PNG or JPEG"),
    ("anim.gif", lambda: png_bytes(fmt="GIF"), "only PNG and JPEG"),
])
def test_a_bad_image_is_a_form_error_and_nothing_is_saved(app, reader, req, rad, name, make, message):
    url = f"/requests/{req.id}/result"
    r = reader.post(url, result_form(rad, **{
        "new_images-0-file": (png_bytes(), "good.png"), "new_images-0-caption": "good",
        "new_images-1-file": (make(), name), "new_images-1-caption": "bad",
    }), token_from=url)
    assert r.status_code == 400
    body = page(r)
    assert f"{name}: {message}" in body
    assert "Fracture of the left 5th rib." in body  # the typed report is kept
    db.session.refresh(req)
    assert req.state == "requested"
    assert db.session.scalar(select(func.count()).select_from(Result)) == 0
    assert db.session.scalar(select(func.count()).select_from(ResultImage)) == 0
    assert image_files(app) == []


def test_a_missing_date_is_a_field_error(reader, req, rad):
    url = f"/requests/{req.id}/result"
    data = result_form(rad)
    data["result_date"] = ""
    r = reader.post(url, data, token_from=url)
    assert r.status_code == 400 and "Give the date of the result." in page(r)
    db.session.refresh(req)
    assert req.state == "requested"


def test_result_of_a_draft_is_refused_with_a_message(reader, create_request, rad):
    draft = create_request()
    r = reader.get(f"/requests/{draft.id}/result")
    assert r.status_code == 302 and r.location.endswith(f"/requests/{draft.id}")
    assert "only a requested request can get a result" in page(reader.get(r.location))
    r = reader.post(f"/requests/{draft.id}/result", result_form(rad), token_from=f"/requests/{draft.id}")
    assert r.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(Result)) == 0


def test_a_second_result_opens_the_first(reader, req, rad):
    result = make_result(req, rad)
    r = reader.get(f"/requests/{req.id}/result")
    assert r.status_code == 302 and r.location.endswith(f"/results/{result.id}")


@pytest.mark.parametrize("role", ["physician", "technologist"])
def test_only_radiologists_write_results(make_user, login, req, rad, role):
    make_user("someone", role)
    c = login("someone")
    assert c.get(f"/requests/{req.id}/result").status_code == 403
    assert c.post(f"/requests/{req.id}/result", result_form(rad)).status_code == 403
    db.session.refresh(req)
    assert req.state == "requested"


# -- images -------------------------------------------------------------------

def test_images_are_served_only_to_signed_in_users(app, client, req, rad, make_user, login):
    result = make_result(req, rad, "with_images", "one")
    img = result.images[0]
    for name in (img.stored_name, thumb_name(img.stored_name)):
        r = client.get(f"/results/images/{name}")
        assert r.status_code == 302 and "/login" in r.location, name
    make_user("tech", "technologist")
    c = login("tech")
    full = c.get(f"/results/images/{img.stored_name}")
    assert full.status_code == 200 and full.mimetype == "image/png"
    assert full.data == (Path(app.config["RESULT_IMAGE_DIR"]) / img.stored_name).read_bytes()
    assert "private" in full.headers["Cache-Control"]
    thumb = c.get(f"/results/images/{thumb_name(img.stored_name)}")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert client.get(f"/results/images/{img.stored_name}").status_code == 302  # still anonymous


@pytest.mark.parametrize("name", [
    "0123456789abcdef0123456789abcdef.png",
    "0123456789abcdef0123456789abcdef.thumb.jpg",
    "secret_key",
    "..%2Fsecret_key",
    "..%2F..%2Finstance%2Fsecret_key",
    "%2E%2E%2Fsecret_key",
    "..",
    "....thumb.jpg",
    "..%5Csecret_key",
])
def test_unknown_or_traversing_image_names_are_404(app, reader, req, rad, name):
    make_result(req, rad, "with_images", "one")
    (Path(app.config["RESULT_IMAGE_DIR"]) / "secret_key").write_text("not for you")
    r = reader.get(f"/results/images/{name}")
    assert r.status_code == 404, (name, r.status_code)
    assert b"not for you" not in r.data


# -- print page and report styles ---------------------------------------------

def test_print_page_with_images_and_captions(reader, req, rad):
    result = make_result(req, rad, "with_images", "Left rib", "")
    body = page(reader.get(f"/results/{result.id}/print"))
    assert img_srcs(body, "findings") == [f"/results/images/{i.stored_name}" for i in result.images]
    assert re.findall(r"<figcaption>(.*?)</figcaption>", body) == ["Left rib"]


def test_print_page_with_images_without_captions(reader, req, rad):
    result = make_result(req, rad, "without_captions", "Left rib", "Right rib")
    body = page(reader.get(f"/results/{result.id}/print"))
    assert len(img_srcs(body, "findings")) == 2
    assert "<figcaption>" not in body and "Left rib</" not in body


def test_print_page_without_images(reader, req, rad):
    result = make_result(req, rad, "without_images", "Left rib")
    body = page(reader.get(f"/results/{result.id}/print"))
    assert "/results/images/" not in body and "Left rib" not in body
    assert "Normal study." in body


def test_print_page_shows_clinic_patient_and_exam(reader, req, rad):
    from ghimaging.settings.service import save_clinic_settings

    save_clinic_settings({"clinic_name": "Lakeside Imaging Centre", "clinic_address": "12 Harbour Road\nKisumu",
                          "clinic_phone": "+254 700 000000", "report_footer": "Reviewed electronically."})
    db.session.commit()
    result = make_result(req, rad)
    r = reader.get(f"/results/{result.id}/print")
    assert r.status_code == 200
    body = page(r)
    for text in ("Lakeside Imaging Centre", "12 Harbour Road\nKisumu", "+254 700 000000", "Reviewed electronically.",
                 "Nakamura, Ken", req.patient.puid, "Chest X-ray PA (CR)", req.accession_number, "2024-05-02",
                 "Dr Rita Rad", "Trauma", "Normal study.", "PRELIMINARY"):
        assert text in body, text


def test_print_page_needs_login(client, req, rad):
    result = make_result(req, rad)
    r = client.get(f"/results/{result.id}/print")
    assert r.status_code == 302 and "/login" in r.location


def test_unknown_result_is_404(reader):
    assert reader.get("/results/999999").status_code == 404
    assert reader.get("/results/999999/print").status_code == 404


# -- edit, finalise, addenda --------------------------------------------------

def test_edit_a_preliminary_result(app, reader, req, rad):
    result = make_result(req, rad, "with_images", "old caption")
    img = result.images[0]
    url = f"/results/{result.id}/edit"
    assert reader.get(url).status_code == 200
    r = reader.post(url, result_form(rad, style="without_captions", report="Revised report.", **{
        f"caption-{img.id}": "new caption", "new_images-0-file": (png_bytes(fmt="JPEG"), "extra.jpg"),
        "new_images-0-caption": "",
        "version": drafts.version_of(result),  # the version the desk was opened on
    }), token_from=url)
    assert r.status_code == 302
    db.session.refresh(result)
    assert result.report == "Revised report." and result.report_style == "without_captions"
    assert [(i.caption, i.original_name) for i in result.images] == [("new caption", "img0.png"), ("", "extra.jpg")]
    assert len(image_files(app)) == 4


def test_edit_form_offers_empty_slots_for_new_images(reader, req, rad):
    """The slots are for new uploads; existing images are edited beside them.
    A slot pre-filled with an existing caption would give that caption to
    whatever file is picked in it."""
    result = make_result(req, rad, "with_images", "old caption")
    body = page(reader.get(f"/results/{result.id}/edit"))
    slots = re.findall(r'<input[^>]*name="new_images-\d+-caption"[^>]*>', body)
    assert len(slots) >= 1
    assert not any("old caption" in s for s in slots), slots


def test_edit_form_of_a_result_with_many_images_opens(reader, req, rad):
    result = make_result(req, rad, "with_images", *[f"view {n}" for n in range(13)])
    r = reader.get(f"/results/{result.id}/edit")
    assert r.status_code == 200
    assert "view 12" in page(r)


def test_finalise_then_edit_is_refused_and_addendum_is_printed(reader, req, rad):
    result = make_result(req, rad)
    view = f"/results/{result.id}"
    r = reader.post(f"{view}/finalise", token_from=view)
    assert r.status_code == 302
    db.session.refresh(result)
    assert result.is_final and result.finalised_by_id == rad.id
    body = page(reader.get(view))
    assert f'action="{view}/finalise"' not in body and f'href="{view}/edit"' not in body
    r = reader.get(f"{view}/edit")
    assert r.status_code == 302 and "This result is final; add an addendum instead." in page(reader.get(r.location))
    r = reader.post(f"{view}/edit", result_form(rad, report="Changed after the fact."), token_from=view)
    assert r.status_code == 302
    db.session.refresh(result)
    assert result.report == "Normal study."
    r = reader.post(f"{view}/addenda", {"text": "Comparison with prior: unchanged."}, token_from=view)
    assert r.status_code == 302
    printed = page(reader.get(f"{view}/print"))
    assert "Comparison with prior: unchanged." in printed
    assert re.search(r"Addendum, \d{4}-\d\d-\d\d \d\d:\d\d, Dr Rita Rad", printed)
    assert "PRELIMINARY" not in printed and "Finalised" in printed


def test_an_empty_addendum_is_a_field_error(reader, req, rad):
    result = make_result(req, rad)
    workflow.finalise_result(result, rad)
    db.session.commit()
    view = f"/results/{result.id}"
    r = reader.post(f"{view}/addenda", {"text": "  "}, token_from=view)
    assert r.status_code == 400 and "The addendum is empty." in page(r)
    db.session.refresh(result)
    assert result.addenda == []


def test_an_addendum_on_a_preliminary_result_is_refused(reader, req, rad):
    result = make_result(req, rad)
    view = f"/results/{result.id}"
    r = reader.post(f"{view}/addenda", {"text": "early"}, token_from=view)
    assert r.status_code == 400 and "Addenda are for final results" in page(r)
    db.session.refresh(result)
    assert result.addenda == []


def test_finalising_twice_gives_a_message(reader, req, rad):
    result = make_result(req, rad)
    workflow.finalise_result(result, rad)
    db.session.commit()
    view = f"/results/{result.id}"
    r = reader.post(f"{view}/finalise", token_from=view)
    assert r.status_code == 302 and "This result is already final." in page(reader.get(r.location))


@pytest.mark.parametrize("role", ["physician", "technologist"])
def test_only_radiologists_edit_finalise_and_add(make_user, login, req, rad, role):
    result = make_result(req, rad)
    make_user("someone", role)
    c = login("someone")
    view = f"/results/{result.id}"
    assert c.get(view).status_code == 200
    assert c.get(f"{view}/edit").status_code == 403
    assert c.post(f"{view}/finalise").status_code == 403
    assert c.post(f"{view}/addenda", {"text": "x"}).status_code == 403
    db.session.refresh(result)
    assert not result.is_final
