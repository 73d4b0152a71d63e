"""The viewer's endpoints against a real Orthanc 1.10.1: who may see a
frame, only series mirrored here, the window applied by Orthanc, private
caching with an ETag, Orthanc away or silent, and "add as key image" of
exactly the frame and window shown.

Pixel values come from Pillow on the PNG bytes.
"""

from __future__ import annotations

import io
from datetime import date

import pytest
from PIL import Image
from pydicom.uid import generate_uid

from ghimaging.extensions import db
from ghimaging.imaging import reporting
from ghimaging.models import ImagingRequest, OrthancSeries, OrthancServer, Result
from ghimaging.orthanc import sync
from ghimaging.orthanc.matching import studies_of
from tests.support import dicomgen
from tests.support.orthanc import SilentServer


@pytest.fixture
def app_config():
    return {"ORTHANC_PREVIEW_DEADLINE": 2, "ORTHANC_PAGE_DEADLINE": 3}


@pytest.fixture
def staff(make_user):
    return {"doc": make_user("doc", "physician"), "rad": make_user("rad", "radiologist")}


def ct_series(patient, req, count: int = 3, rows: int = 32, series_number: int = 1):
    """``count`` CT instances (HU = value - 1024, stored window 40/400) of the request's study."""
    series_uid = generate_uid()
    return [dicomgen.make_instance(patient.puid, "Viewer^Test", req.study_instance_uid, series_uid,
                                   accession=req.accession_number, modality="CT", rows=rows, cols=rows,
                                   series_number=series_number, instance_number=i + 1,
                                   extra={"RescaleIntercept": -1024, "RescaleSlope": 1,
                                          "WindowCenter": 40, "WindowWidth": 400})
            for i in range(count)]


@pytest.fixture
def linked(app, orthanc, orthanc_row, staff, create_patient, create_request):
    """A submitted request with a 3-instance CT series, mirrored and linked;
    a preliminary result. Returns (request, result, series row, instance ids by number)."""
    patient = create_patient(family_name="Viewer", given_name="Test")
    req = create_request(patient, submit=True, user=staff["doc"], physician=staff["doc"])
    ids = {}
    for ds in ct_series(patient, req):
        ids[int(ds.InstanceNumber)] = orthanc.upload(dicomgen.to_bytes(ds))["ID"]
    summary = sync.run(orthanc_row.id, mode="full")
    assert summary.error == "", summary.error
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    [link] = studies_of(req)
    series = link.study.series[0]
    result = reporting.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(),
                                     report="Findings.")
    db.session.commit()
    return req, result, series, ids


def frame_url(series: OrthancSeries, instance: str, frame: int = 0, window: str = "") -> str:
    return f"/viewer/series/{series.id}/instances/{instance}/frames/{frame}" + (f"?{window}" if window else "")


def post_json(c, path: str, body: dict):
    """As the widget posts: JSON with the page's CSRF token in X-CSRFToken."""
    return c.client.post(path, json=body, headers={"X-CSRFToken": c.token(), "Accept": "application/json"})


def grey(png: bytes, x: int, y: int) -> int:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return int(img.convert("L").getpixel((x, y)))


def test_series_lists_instances_in_order_with_the_stored_window_and_ct_presets(linked, login):
    _req, _result, series, ids = linked
    r = login("rad").get(f"/viewer/series/{series.id}")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert [i["id"] for i in body["instances"]] == [ids[1], ids[2], ids[3]]
    assert all(i["frames"] == 1 for i in body["instances"])
    assert body["window"] == [40, 400]
    assert [p["label"] for p in body["presets"]] == ["Brain", "Lung", "Bone", "Abdomen"]


def test_a_frame_is_rendered_by_orthanc_under_the_window_asked(linked, login):
    _req, _result, series, ids = linked
    rad = login("rad")
    narrow = rad.get(frame_url(series, ids[1], window="c=40&w=80"))
    wide = rad.get(frame_url(series, ids[1], window="c=3000&w=2000"))
    assert narrow.status_code == wide.status_code == 200
    assert narrow.mimetype == "image/png"
    # pixel (0, 16): stored 1056, HU 32: grey 102 in 40/80, black in 3000/2000 (2000-4000 HU)
    assert 90 < grey(narrow.data, 0, 16) < 115 and grey(wide.data, 0, 16) == 0
    assert narrow.data != wide.data


def test_frames_are_privately_cached_with_an_etag_and_revalidated(linked, login):
    _req, _result, series, ids = linked
    rad = login("rad")
    url = frame_url(series, ids[2], window="c=40&w=400")
    first = rad.get(url)
    assert first.status_code == 200
    cache = first.headers["Cache-Control"]
    assert "private" in cache and "public" not in cache
    etag = first.headers["ETag"]
    assert etag
    again = rad.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    other = rad.get(frame_url(series, ids[2], window="c=40&w=80"), headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["ETag"] != etag


def test_an_account_without_a_role_is_refused(linked, login, client, make_user):
    """Every person has a role; an account left without one (its roles taken
    away while signed in, as service accounts have none) sees no image."""
    _req, _result, series, ids = linked
    user = make_user("former", "technologist")
    signed_in = login("former")
    assert signed_in.get(frame_url(series, ids[1])).status_code == 200
    user.set_roles([])
    db.session.commit()
    assert signed_in.get(frame_url(series, ids[1])).status_code == 403
    assert signed_in.get(f"/viewer/series/{series.id}").status_code == 403
    anonymous = client.get(frame_url(series, ids[1]))
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_a_service_account_token_gets_no_frame(linked, app):
    from ghimaging.auth.service import create_service_account, create_token

    _req, _result, series, ids = linked
    robot = create_service_account("push", "Orthanc push")
    token = create_token(robot, "push")
    db.session.commit()
    r = app.test_client().get(frame_url(series, ids[1]), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (302, 401, 403) and r.mimetype != "image/png"


def test_unmirrored_series_and_instances_of_other_series_are_refused(linked, login, orthanc, create_patient,
                                                                      create_request, staff):
    _req, _result, series, ids = linked
    rad = login("rad")
    # An instance Orthanc has but outside this series (another patient's, never synchronised).
    other = create_patient(family_name="Other", given_name="Person")
    other_req = create_request(other, submit=True, user=staff["doc"], physician=staff["doc"])
    [foreign] = ct_series(other, other_req, count=1)
    foreign_id = orthanc.upload(dicomgen.to_bytes(foreign))["ID"]
    r = rad.get(frame_url(series, foreign_id))
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    assert rad.get(f"/viewer/series/{series.id + 999}").status_code == 404
    assert rad.get(frame_url(series, "not-an-id")).status_code == 404
    assert rad.get(frame_url(series, ids[1], frame=7)).status_code == 404
    assert rad.get(frame_url(series, ids[1], window="c=40&w=0")).status_code == 400
    assert rad.get(frame_url(series, ids[1], window="c=abc&w=10")).status_code == 400


def test_orthanc_down_or_silent_is_a_message_not_a_500(linked, login, orthanc):
    _req, _result, series, ids = linked
    rad = login("rad")
    orthanc.kill()
    down = rad.get(frame_url(series, ids[3], window="c=40&w=400"))
    assert down.status_code == 502
    assert "cannot be reached" in down.get_json()["message"]
    listing = rad.get(f"/viewer/series/{series.id}")
    assert listing.status_code == 502 and "Main" in listing.get_json()["message"]
    with SilentServer() as silent:
        server = db.session.get(OrthancServer, series.study.server_id)
        server.url = silent.url
        db.session.commit()
        slow = rad.get(frame_url(series, ids[3], window="c=40&w=400"))
        assert slow.status_code == 504
        assert "did not answer in time" in slow.get_json()["message"]


def test_an_unexpected_failure_of_a_frame_answers_json_to_every_role(linked, login, staff, monkeypatch):
    """A bug or a database failure inside the frame view (stood in for by an
    exception where it reads the series: no real part fails this way on
    demand): the widget gets the JSON message. The frame's signed-in person
    is the light user (auth/light.py), and the error page drawn for it
    crashed for a physician (no queues) and named nobody for others."""
    from ghimaging.imaging import viewer_routes

    _req, _result, series, ids = linked

    def broken(series_id):
        raise RuntimeError("stand-in for a bug")

    monkeypatch.setattr(viewer_routes, "_frame_source", broken)
    for who in ("doc", "rad"):
        r = login(who).get(frame_url(series, ids[1]), headers={"Accept": "image/avif,image/webp,*/*"})
        assert r.status_code == 500 and r.get_json()["error"] == "internal", (who, r.data[:200])


def test_add_as_key_image_stores_the_frame_and_window_shown(linked, login, app):
    _req, result, series, ids = linked
    rad = login("rad")
    shown = rad.get(frame_url(series, ids[2], window="c=40&w=80")).data
    r = post_json(rad, f"/viewer/results/{result.id}/key-images",
                      {"series_id": series.id, "instance_id": ids[2], "frame": 0, "center": 40, "width": 80,
                       "caption": "Narrow window"})
    assert r.status_code == 201, r.get_data(as_text=True)
    db.session.expire_all()
    images = db.session.get(Result, result.id).images
    assert [i.caption for i in images] == ["Narrow window"]
    stored = (app.config["RESULT_IMAGE_DIR"] + "/" + images[0].stored_name)
    with open(stored, "rb") as fh:
        assert fh.read() == shown, "the key image is the very picture the viewer showed"
    assert rad.get(r.get_json()["url"]).status_code == 200


def test_key_image_refused_for_other_series_final_results_and_other_roles(linked, login):
    _req, result, series, ids = linked
    body = {"series_id": series.id, "instance_id": ids[1], "frame": 0, "center": 40, "width": 400}
    assert post_json(login("doc"), f"/viewer/results/{result.id}/key-images", body).status_code == 403
    rad = login("rad")
    bad = post_json(rad, f"/viewer/results/{result.id}/key-images", {**body, "width": -1})
    assert bad.status_code == 400
    reporting.finalise_result(db.session.get(Result, result.id), result.radiologist)
    db.session.commit()
    final = post_json(rad, f"/viewer/results/{result.id}/key-images", body)
    assert final.status_code == 409 and "final" in final.get_json()["message"]


def test_orthanc_viewer_links_are_for_administrators_and_say_they_need_orthancs_sign_in(linked, login, make_user):
    _req, _result, series, _ids = linked
    study_page = f"/orthanc/studies/{series.study_id}"
    staff_html = login("rad").get(study_page).get_data(as_text=True)
    assert "Orthanc Explorer" not in staff_html and "explorer.html" not in staff_html
    make_user("boss", "admin")
    admin_html = login("boss").get(study_page).get_data(as_text=True)
    assert "explorer.html#study?uuid=" in admin_html
    assert "Orthanc's own sign-in" in admin_html


@pytest.fixture
def odd_series(app, orthanc, orthanc_row, staff, create_patient, create_request):
    """A request whose study holds an image with no stored window (series 1)
    and a multi-frame image of 3 frames (series 2). Returns {number: series row}."""
    patient = create_patient(family_name="Odd", given_name="Series")
    req = create_request(patient, submit=True, user=staff["doc"], physician=staff["doc"])
    common = {"accession": req.accession_number}
    unwindowed = dicomgen.make_unwindowed(patient.puid, "Odd^Series", req.study_instance_uid, series_number=1,
                                          rows=32, cols=32, modality="MR", **common)
    multi = dicomgen.make_instance(patient.puid, "Odd^Series", req.study_instance_uid, series_number=2,
                                   rows=16, cols=16, modality="US", **common)
    multi.NumberOfFrames = 3
    multi.PixelData = bytes(512) + bytes([0xFF, 0x0F]) * 256 + bytes(512)  # black, white, black
    for ds in (unwindowed, multi):
        orthanc.upload(dicomgen.to_bytes(ds))
    assert sync.run(orthanc_row.id, mode="full").error == ""
    db.session.expire_all()
    [link] = studies_of(db.session.get(ImagingRequest, req.id))
    return {se.number: se for se in link.study.series}


def test_an_image_without_a_stored_window_opens_on_its_own_range(odd_series, login):
    rad = login("rad")
    body = rad.get(f"/viewer/series/{odd_series[1].id}").get_json()
    # make_unwindowed's values run from 0 to 4095 with no rescale: the window spans them
    assert body["window"] == [2047.5, 4095]
    assert body["presets"] == []  # presets are for CT; an MR starts from the image
    frame = rad.get(frame_url(odd_series[1], body["instances"][0]["id"], window="c=2047.5&w=4095"))
    with Image.open(io.BytesIO(frame.data)) as img:
        low, high = img.convert("L").getextrema()
    assert high - low > 200, "not black: the window the viewer opens on shows the picture"


def test_a_multi_frame_image_is_scrolled_frame_by_frame(odd_series, login):
    rad = login("rad")
    series = odd_series[2]
    body = rad.get(f"/viewer/series/{series.id}").get_json()
    [inst] = body["instances"]
    assert inst["frames"] == 3
    c, w = body["window"]
    pictures = [rad.get(frame_url(series, inst["id"], n, f"c={c}&w={w}")) for n in range(3)]
    assert [p.status_code for p in pictures] == [200, 200, 200]
    black, white, black_again = (grey(p.data, 8, 8) for p in pictures)
    assert black == black_again == 0 and white > 240
    assert rad.get(frame_url(series, inst["id"], 3, f"c={c}&w={w}")).status_code == 404


def test_the_widget_waits_for_a_saved_result_before_adding_key_images(app, orthanc, orthanc_row, staff, login,
                                                                       create_patient, create_request):
    """On the page that writes a new result the viewer shows the images, and
    its key image button is disabled with the reason (no result yet)."""
    patient = create_patient(family_name="New", given_name="Report")
    req = create_request(patient, submit=True, user=staff["doc"], physician=staff["doc"])
    [ds] = ct_series(patient, req, count=1)
    orthanc.upload(dicomgen.to_bytes(ds))
    assert sync.run(orthanc_row.id, mode="full").error == ""
    html = login("rad").get(f"/requests/{req.id}/result").get_data(as_text=True)
    assert "data-viewer" in html and "/viewer/series/" in html
    assert "data-add-key" not in html and "data-key-url" not in html
    assert "Save the report first" in html


def test_frames_come_again_once_orthanc_is_back(linked, login, orthanc):
    """The viewer keeps one connection to Orthanc per server; a restarted
    Orthanc (the kept connection dead) serves the next frame."""
    _req, _result, series, ids = linked
    rad = login("rad")
    assert rad.get(frame_url(series, ids[1], window="c=40&w=400")).status_code == 200
    orthanc.restart(graceful=False)
    assert rad.get(frame_url(series, ids[2], window="c=40&w=400")).status_code == 200


def test_odd_key_image_bodies_are_refused_with_a_message_never_a_500(linked, login):
    """Whatever JSON the key image endpoint gets, it answers 400 or 404
    with a sentence, stores nothing, and a good body still works after."""
    _req, result, series, ids = linked
    rad = login("rad")
    path = f"/viewer/results/{result.id}/key-images"
    good = {"series_id": series.id, "instance_id": ids[1], "frame": 0, "center": 40, "width": 400}
    head = f'{{"series_id": {series.id}, "instance_id": "{ids[1]}", '
    raw_bodies = ["[1]", "null", '"text"', "5", "true", "{", "[]", '{"series_id": 1e400}',
                  head + '"frame": 1e400, "center": 40, "width": 400}',
                  head + '"frame": 0, "center": NaN, "width": 400}',
                  head + '"frame": 0, "center": 40, "width": Infinity}']
    odd_ids = ["²", "١٢", "1²", " 1", "-1", -1, 1.5, True, [series.id], {"id": series.id}, 10**30, str(10**30), None]
    dict_bodies = [{**good, "series_id": v} for v in odd_ids]
    dict_bodies += [{**good, "frame": v} for v in (-1, 1.5, "²", 10**400, True, [0], {"n": 0}, 100_000)]
    dict_bodies += [{**good, k: v} for k in ("center", "width")
                    for v in ("abc", [1], {"v": 1}, True, 10**400, "1e400", "nan", 1e8)]
    dict_bodies += [{**good, "width": 0}, {**good, "width": -5}, {**good, "center": None},
                    {**good, "caption": {"nested": ["x"]}}, {**good, "caption": 12}, {**good, "instance_id": [ids[1]]}]
    answers = [rad.client.post(path, data=raw, content_type="application/json",
                               headers={"X-CSRFToken": rad.token(), "Accept": "application/json"})
               for raw in raw_bodies]
    answers += [post_json(rad, path, body) for body in dict_bodies]
    for body, r in zip(raw_bodies + dict_bodies, answers, strict=True):
        assert r.status_code in (400, 404), (body, r.status_code, r.get_data(as_text=True)[:200])
        assert r.get_json()["message"], body
    assert [a.status_code for a in answers[:7]] == [400] * 7  # not a JSON object: said so
    assert db.session.get(Result, result.id).images == []
    assert post_json(rad, path, {**good, "series_id": str(series.id), "frame": "0"}).status_code == 201


def test_a_series_whose_grey_values_orthanc_cannot_render_opens_without_a_window(
        app, orthanc, orthanc_row, staff, login, create_patient, create_request, caplog):
    """An unwindowed greyscale image whose values cannot be measured still
    opens (window None), logged, never a 500 or a refused series: a real
    32-bit image, for which Orthanc 1.10.1 answers 415 to its values and
    frames; the frame then says so."""
    patient = create_patient(family_name="Grey", given_name="Values")
    req = create_request(patient, submit=True, user=staff["doc"], physician=staff["doc"])
    ds = dicomgen.make_unwindowed(patient.puid, "Grey^Values", req.study_instance_uid, rows=8, cols=8,
                                  modality="MR", accession=req.accession_number)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelData = 32, 32, 31, bytes(8 * 8 * 4)
    orthanc.upload(dicomgen.to_bytes(ds))
    assert sync.run(orthanc_row.id, mode="full").error == ""
    db.session.expire_all()
    [link] = studies_of(db.session.get(ImagingRequest, req.id))
    series = link.study.series[0]
    rad = login("rad")
    r = rad.get(f"/viewer/series/{series.id}")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["window"] is None and len(body["instances"]) == 1
    assert "no window for" in caplog.text
    frame = rad.get(frame_url(series, body["instances"][0]["id"]))
    assert frame.status_code == 415 and "cannot decode" in frame.get_json()["message"]
