"""The request and result rules in ghimaging.imaging.workflow, without pages."""

from __future__ import annotations

import io
import re
import threading
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.imaging.images import thumb_name
from ghimaging.imaging.workflow import NewImage, TransitionError, ValidationError
from ghimaging.models import ImagingRequest, Result, ResultImage
from tests.support.factories import png_bytes

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def assert_dicom_uid(uid: str) -> None:
    assert len(uid) <= 64, uid
    assert UID_RE.match(uid), f"not a valid DICOM UID: {uid!r}"



@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician")


@pytest.fixture
def rad(make_user):
    return make_user("rad", "radiologist")


@pytest.fixture
def draft(create_request, doc):
    return create_request(user=doc, physician=doc)


@pytest.fixture
def requested(create_request, doc):
    return create_request(user=doc, physician=doc, submit=True)


def _result(req, user, *images, report="No acute findings.", **kw):
    return workflow.create_result(req, user, radiologist=user, result_date=date(2024, 5, 2), report=report,
                                  new_images=list(images), **kw)


@pytest.fixture
def reported(requested, rad):
    """A preliminary result: the request stays requested."""
    _result(requested, rad)
    return requested


@pytest.fixture
def done(reported, rad):
    """Its result finalised: the request is done."""
    workflow.finalise_result(reported.result, rad)
    return reported


@pytest.fixture
def cancelled(draft, doc):
    workflow.cancel(draft, doc, "Patient declined")
    return draft


def image_files(app) -> list[str]:
    folder = Path(app.config["RESULT_IMAGE_DIR"])
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def events(req) -> list[tuple[str | None, str | None, str, str | None]]:
    db.session.refresh(req)
    return [(e.user.username if e.user else None, e.from_state, e.action, e.to_state) for e in req.events]


# -- transitions --------------------------------------------------------------

def test_create_order_makes_drafts_with_a_create_event(draft, doc):
    assert draft.state == "draft"
    assert events(draft) == [("doc", None, "create", "draft")]


def test_create_order_with_submit_makes_requested(requested):
    assert requested.state == "requested"
    assert [e[2:] for e in events(requested)] == [("create", "draft"), ("submit", "requested")]


def test_submit_moves_draft_to_requested_and_records_who(draft, make_user):
    nurse = make_user("orderer2", "physician")
    workflow.submit(draft, nurse)
    assert draft.state == "requested"
    assert events(draft)[-1] == ("orderer2", "draft", "submit", "requested")


@pytest.mark.parametrize("state", ["requested", "done", "cancelled"])
def test_submit_is_refused_outside_draft_and_names_the_state(request, state, doc):
    req = request.getfixturevalue(state)
    before = events(req)
    with pytest.raises(TransitionError, match=rf"is {state}; it cannot be submitted"):
        workflow.submit(req, doc)
    db.session.refresh(req)
    assert req.state == state
    assert events(req) == before


@pytest.mark.parametrize("state", ["draft", "requested"])
def test_cancel_from_draft_or_requested_records_reason(request, state, doc):
    req = request.getfixturevalue(state)
    workflow.cancel(req, doc, "  Ordered twice  ")
    db.session.refresh(req)
    assert req.state == "cancelled"
    assert req.cancel_reason == "Ordered twice"
    assert events(req)[-1] == ("doc", state, "cancel", "cancelled")
    assert req.events[-1].note == "Ordered twice"


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_cancel_needs_a_reason(requested, doc, reason):
    before = events(requested)
    with pytest.raises(ValidationError) as exc:
        workflow.cancel(requested, doc, reason)
    assert "reason" in exc.value.errors
    db.session.refresh(requested)
    assert requested.state == "requested" and requested.cancel_reason == ""
    assert events(requested) == before


@pytest.mark.parametrize("state", ["done", "cancelled"])
def test_cancel_is_refused_from_done_or_cancelled(request, state, doc):
    req = request.getfixturevalue(state)
    with pytest.raises(TransitionError, match=rf"is {state}; it cannot be cancelled"):
        workflow.cancel(req, doc, "too late")
    db.session.refresh(req)
    assert req.state == state


def test_a_preliminary_result_leaves_the_request_requested(requested, rad):
    result = _result(requested, rad)
    db.session.refresh(requested)
    assert requested.state == "requested"
    assert requested.result.id == result.id and not result.is_final
    assert events(requested)[-1] == ("rad", "requested", "result written", "requested")


def test_finalising_the_result_completes_the_request(reported, rad):
    workflow.finalise_result(reported.result, rad)
    db.session.refresh(reported)
    assert reported.state == "done"
    assert events(reported)[-2:] == [("rad", "requested", "complete", "done"),
                                     ("rad", "done", "result finalised", "done")]


def test_a_result_written_final_completes_the_request_at_once(requested, rad):
    _result(requested, rad, final=True)
    db.session.refresh(requested)
    assert requested.state == "done" and requested.result.is_final


def test_a_reported_request_can_no_longer_be_cancelled_or_edited(reported, doc):
    assert not workflow.can("cancel", reported) and not workflow.editable(reported)
    with pytest.raises(TransitionError, match="has a result; it cannot be cancelled"):
        workflow.cancel(reported, doc, "too late")
    with pytest.raises(TransitionError, match="is reported; it can no longer be edited"):
        workflow.update_request(reported, user=doc, physician=doc, urgent=True, clinical_context="x",
                                comment="y", scheduled_at=None)
    db.session.refresh(reported)
    assert reported.state == "requested" and reported.urgent is False


@pytest.mark.parametrize("state", ["draft", "cancelled"])
def test_create_result_is_refused_unless_requested(request, state, rad):
    req = request.getfixturevalue(state)
    with pytest.raises(TransitionError, match=rf"is {state}; it cannot be completed"):
        _result(req, rad)
    db.session.refresh(req)
    assert req.state == state
    assert db.session.scalar(select(func.count()).select_from(Result)) == 0


@pytest.mark.parametrize("state", ["reported", "done"])
def test_a_reported_request_cannot_get_a_second_result(request, state, rad):
    req = request.getfixturevalue(state)
    with pytest.raises(TransitionError, match=req.accession_number):
        _result(req, rad, report="second opinion")
    assert db.session.scalar(select(func.count()).select_from(Result)) == 1


def test_there_is_no_way_back_from_done_or_cancelled():
    """The rule table itself: nothing leads out of a final state."""
    final = {workflow.S.DONE, workflow.S.CANCELLED}
    for action, (sources, _) in workflow.TRANSITIONS.items():
        assert not (sources & final), action


@pytest.mark.parametrize("state", ["draft", "requested"])
def test_update_request_in_draft_or_requested(request, state, doc, make_user):
    req = request.getfixturevalue(state)
    other = make_user("doc2", "physician")
    when = datetime(2024, 6, 1, 9, 30)
    workflow.update_request(req, user=doc, physician=other, urgent=True, clinical_context=" Cough ",
                            comment="fasting", scheduled_at=when)
    db.session.refresh(req)
    assert (req.requesting_physician.username, req.urgent, req.clinical_context, req.comment, req.scheduled_at) == \
        ("doc2", True, "Cough", "fasting", when)
    assert events(req)[-1] == ("doc", state, "edit", state)


@pytest.mark.parametrize("state", ["done", "cancelled"])
def test_update_request_is_refused_when_closed(request, state, doc):
    req = request.getfixturevalue(state)
    with pytest.raises(TransitionError, match=rf"is {state}"):
        workflow.update_request(req, user=doc, physician=doc, urgent=True, clinical_context="x",
                                comment="y", scheduled_at=None)
    db.session.refresh(req)
    assert req.urgent is False and req.comment == ""


def test_update_request_refuses_a_non_physician(draft, doc, make_user):
    tech = make_user("tech", "technologist")
    with pytest.raises(ValidationError) as exc:
        workflow.update_request(draft, user=doc, physician=tech, urgent=False, clinical_context="",
                                comment="", scheduled_at=None)
    assert "physician" in exc.value.errors


# -- orders, numbers and UIDs -------------------------------------------------

def test_two_tests_make_two_requests_sharing_one_order_number(catalog, create_patient, doc):
    reqs = workflow.create_order(create_patient(), [catalog["chest"], catalog["abd"]], user=doc, physician=doc,
                                 urgent=True, clinical_context="Fever", comment="c")
    assert len(reqs) == 2
    assert reqs[0].order_number == reqs[1].order_number
    assert reqs[0].accession_number != reqs[1].accession_number
    assert reqs[0].study_instance_uid != reqs[1].study_instance_uid
    assert {r.test.code for r in reqs} == {"XR-CHEST", "US-ABD"}
    assert all(r.urgent and r.clinical_context == "Fever" for r in reqs)
    for r in reqs:
        assert len(r.accession_number) <= 16 and r.accession_number.startswith("GH")
        assert r.study_instance_uid.startswith("2.25.")
        assert_dicom_uid(r.study_instance_uid)


def test_each_order_gets_a_new_order_number(create_request):
    assert create_request().order_number != create_request().order_number


@pytest.mark.parametrize("app_config", [{"ACCESSION_PREFIX": "RADX01"}])
def test_accession_numbers_use_the_configured_prefix(create_request):
    accs = [create_request().accession_number for _ in range(3)]
    assert len(set(accs)) == 3
    for a in accs:
        assert a.startswith("RADX01") and len(a) <= 16 and a[6:].isdigit()


@pytest.mark.parametrize("app_config", [{"ACCESSION_PREFIX": "ABCDEFGH"}])
def test_a_longest_prefix_still_fits_sixteen_characters(create_request):
    a = create_request().accession_number
    assert a.startswith("ABCDEFGH") and len(a) <= 16


@pytest.mark.parametrize("app_config", [{"ORG_ROOT": "1.2.826.0.1.3680043.10.1234"}])
def test_study_uids_are_under_the_configured_root(create_request):
    uids = {create_request().study_instance_uid for _ in range(5)}
    assert len(uids) == 5
    for uid in uids:
        assert uid.startswith("1.2.826.0.1.3680043.10.1234.")
        assert_dicom_uid(uid)


@pytest.mark.parametrize("app_config", [{"ORG_ROOT": "1.2.840.10008.99999.123456789.1234567890"}])
def test_study_uids_under_a_forty_character_root_stay_within_64(create_request):
    for _ in range(20):
        assert_dicom_uid(create_request().study_instance_uid)


def test_inactive_test_is_refused(catalog, create_patient, doc):
    from ghimaging.catalog.service import save_test

    t = catalog["abd"]
    save_test(t, code=t.code, name=t.name, modality=t.modality, ae_title=t.ae_title, active=False)
    with pytest.raises(ValidationError) as exc:
        workflow.create_order(create_patient(), [catalog["chest"], t], user=doc, physician=doc)
    assert "US-ABD" in exc.value.errors["tests"]
    assert db.session.scalar(select(func.count()).select_from(ImagingRequest)) == 0


def test_no_tests_is_refused(create_patient, doc):
    with pytest.raises(ValidationError) as exc:
        workflow.create_order(create_patient(), [], user=doc, physician=doc)
    assert "tests" in exc.value.errors


def test_the_same_test_twice_is_refused(catalog, create_patient, doc):
    with pytest.raises(ValidationError) as exc:
        workflow.create_order(create_patient(), [catalog["chest"], catalog["chest"]], user=doc, physician=doc)
    assert "tests" in exc.value.errors


@pytest.mark.parametrize("roles", [("technologist",), ("radiologist",)])
def test_requesting_physician_needs_the_physician_role(catalog, create_patient, doc, make_user, roles):
    other = make_user("notadoc", *roles)
    with pytest.raises(ValidationError) as exc:
        workflow.create_order(create_patient(), [catalog["chest"]], user=doc, physician=other)
    assert "physician" in exc.value.errors
    assert db.session.scalar(select(func.count()).select_from(ImagingRequest)) == 0


def test_a_disabled_physician_is_refused(catalog, create_patient, doc, make_user):
    gone = make_user("gone", "physician")
    gone.active = False
    db.session.commit()
    with pytest.raises(ValidationError) as exc:
        workflow.create_order(create_patient(), [catalog["chest"]], user=doc, physician=gone)
    assert "physician" in exc.value.errors


def test_overlong_comment_is_refused(catalog, create_patient, doc):
    with pytest.raises(ValidationError) as exc:
        workflow.create_order(create_patient(), [catalog["chest"]], user=doc, comment="x" * 4001)
    assert "comment" in exc.value.errors


def _order_in_thread(app, patient_id, test_id, n, barrier, out, errors):
    try:
        with app.app_context():
            from ghimaging.models import ImagingTest, Patient

            patient = db.session.get(Patient, patient_id)
            test = db.session.get(ImagingTest, test_id)
            barrier.wait(timeout=30)
            for _ in range(n):
                reqs = workflow.create_order(patient, [test], user=None)
                db.session.commit()  # each order is its own transaction, as from a page
                out.extend((r.accession_number, r.order_number, r.study_instance_uid) for r in reqs)
    except Exception as exc:  # reported by the main thread
        errors.append(exc)


def _order_at_once(app, patient_id: int, test_id: int, per_thread: int) -> list[tuple[str, str, str]]:
    barrier = threading.Barrier(2)
    out: list[tuple[str, str, str]] = []
    errors: list[Exception] = []
    threads = [threading.Thread(target=_order_in_thread,
                                args=(app, patient_id, test_id, per_thread, barrier, out, errors))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(out) == 2 * per_thread
    return out


def _assert_all_distinct(out: list[tuple[str, str, str]]) -> None:
    n = len(out)
    assert len({a for a, _, _ in out}) == n, "duplicate accession numbers"
    assert len({o for _, o, _ in out}) == n, "duplicate order numbers"
    assert len({u for _, _, u in out}) == n, "duplicate StudyInstanceUIDs"
    stored = db.session.scalars(select(ImagingRequest.accession_number)).all()
    assert sorted(stored) == sorted(a for a, _, _ in out)


def test_numbers_are_unique_when_the_very_first_orders_are_created_at_once(app, catalog, create_patient):
    """Two workers placing the first orders of a fresh database at the same
    moment (no counter rows yet) must both succeed with distinct numbers."""
    patient = create_patient()
    _assert_all_distinct(_order_at_once(app, patient.id, catalog["chest"].id, 6))


def test_numbers_are_unique_when_orders_are_created_at_once(app, catalog, create_patient):
    patient = create_patient()
    workflow.create_order(patient, [catalog["chest"]], user=None)  # counters exist from here on
    db.session.commit()
    out = _order_at_once(app, patient.id, catalog["chest"].id, 8)
    out.append(tuple(db.session.execute(select(ImagingRequest.accession_number, ImagingRequest.order_number,
                                               ImagingRequest.study_instance_uid)
                                        .order_by(ImagingRequest.id).limit(1)).one()))
    _assert_all_distinct(out)


# -- signal -------------------------------------------------------------------

def test_request_changed_fires_with_the_action(catalog, create_patient, doc, rad):
    seen: list[tuple[int, str]] = []

    def receiver(sender, request, action):
        assert sender is request
        seen.append((request.id, action))

    with workflow.request_changed.connected_to(receiver):
        a, b = workflow.create_order(create_patient(), [catalog["chest"], catalog["abd"]], user=doc)
        assert seen == [(a.id, "create"), (b.id, "create")]
        seen.clear()
        workflow.update_request(a, user=doc, physician=None, urgent=True, clinical_context="",
                                comment="", scheduled_at=None)
        workflow.submit(a, doc)
        workflow.cancel(b, doc, "duplicate")
        result = _result(a, rad)
        workflow.finalise_result(result, rad)
        assert seen == [(a.id, "edit"), (a.id, "submit"), (b.id, "cancel"), (a.id, "result"), (a.id, "finalise")]
        seen.clear()
        c = workflow.create_order(create_patient(), [catalog["chest"]], user=doc, submit=True)[0]
        assert seen == [(c.id, "submit")]
        seen.clear()
        with pytest.raises(TransitionError):
            workflow.submit(c, doc)
        assert seen == []


# -- results and images -------------------------------------------------------

def _rgba_png() -> io.BytesIO:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 0, 255, 128)).save(buf, "PNG")
    buf.seek(0)
    return buf


def _gray16_png() -> io.BytesIO:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("I;16", (600, 400), 3000).save(buf, "PNG")
    buf.seek(0)
    return buf


def test_png_and_jpeg_are_attached_with_thumbnails(app, requested, rad):
    from PIL import Image

    result = _result(requested, rad,
                     NewImage(png_bytes(), "chest.png", " PA view "),
                     NewImage(png_bytes(size=(800, 600), fmt="JPEG"), "lat.jpg", "Lateral"),
                     NewImage(_rgba_png(), "overlay.png"),
                     NewImage(_gray16_png(), "raw16.png", "16-bit"))
    imgs = result.images
    assert [(i.content_type, i.caption, i.original_name) for i in imgs] == [
        ("image/png", "PA view", "chest.png"), ("image/jpeg", "Lateral", "lat.jpg"),
        ("image/png", "", "overlay.png"), ("image/png", "16-bit", "raw16.png")]
    assert (imgs[1].width, imgs[1].height) == (800, 600)
    assert [i.position for i in imgs] == [1, 2, 3, 4]
    folder = Path(app.config["RESULT_IMAGE_DIR"])
    assert image_files(app) == sorted([i.stored_name for i in imgs] + [thumb_name(i.stored_name) for i in imgs])
    assert all(i.stored_name not in {"chest.png", "lat.jpg"} for i in imgs)
    with Image.open(folder / thumb_name(imgs[1].stored_name)) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= 360


def _truncated_png() -> io.BytesIO:
    data = png_bytes(size=(300, 300)).getvalue()
    return io.BytesIO(data[: len(data) // 2])


def _gif() -> io.BytesIO:
    return png_bytes(fmt="GIF")


BAD_IMAGES = {
    "text_renamed_png": (lambda: io.BytesIO(b"just some notes, not an image\n" * 10), "scan.png",
                         "not a readable PNG or JPEG"),
    "truncated_png": (_truncated_png, "cut.png", "not a readable PNG or JPEG"),
    "gif": (_gif, "anim.gif", "only PNG and JPEG"),
    "empty": (lambda: io.BytesIO(b""), "empty.png", "empty"),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_bad_images_are_refused_leaving_nothing_behind(app, requested, rad, kind):
    make, name, message = BAD_IMAGES[kind]
    with pytest.raises(ValidationError) as exc:
        # a good image first: it must be removed again when the second is refused
        _result(requested, rad, NewImage(png_bytes(), "good.png", "ok"), NewImage(make(), name, "bad"))
    assert message in exc.value.errors["images"]
    assert name in exc.value.errors["images"]
    assert image_files(app) == []
    assert db.session.scalar(select(func.count()).select_from(Result)) == 0
    assert db.session.scalar(select(func.count()).select_from(ResultImage)) == 0
    db.session.refresh(requested)
    assert requested.state == "requested" and requested.result is None
    assert events(requested)[-1][2] == "submit"


@pytest.mark.parametrize("app_config", [{"RESULT_IMAGE_MAX_BYTES": 50_000}])
def test_an_oversized_image_is_refused_leaving_nothing_behind(app, requested, rad):
    from PIL import Image

    big = io.BytesIO()
    Image.effect_noise((300, 300), 80).convert("RGB").save(big, "PNG")  # noise does not compress
    assert len(big.getvalue()) > 50_000
    big.seek(0)
    with pytest.raises(ValidationError) as exc:
        _result(requested, rad, NewImage(png_bytes(), "small.png"), NewImage(big, "huge.png"))
    assert "huge.png" in exc.value.errors["images"] and "larger than" in exc.value.errors["images"]
    assert image_files(app) == []
    assert db.session.scalar(select(func.count()).select_from(Result)) == 0
    db.session.refresh(requested)
    assert requested.state == "requested"


@pytest.mark.parametrize("app_config", [{"RESULT_IMAGE_MAX_BYTES": 50_000}])
def test_the_oversize_message_states_a_usable_limit(requested, rad):
    """A limit under 1 MB must not read as 'larger than 0 MB'."""
    big = io.BytesIO(b"\x89PNG" + b"\0" * 60_000)
    with pytest.raises(ValidationError) as exc:
        _result(requested, rad, NewImage(big, "huge.png"))
    assert " 0 MB" not in exc.value.errors["images"], exc.value.errors["images"]


def test_an_overlong_caption_is_refused_leaving_nothing_behind(app, requested, rad):
    with pytest.raises(ValidationError) as exc:
        _result(requested, rad, NewImage(png_bytes(), "a.png", "ok"), NewImage(png_bytes(), "b.png", "x" * 501))
    assert "caption" in exc.value.errors["images"]
    assert image_files(app) == []
    assert db.session.scalar(select(func.count()).select_from(Result)) == 0


def test_result_needs_a_radiologist_and_a_known_style(requested, rad, make_user):
    doc2 = make_user("doc3", "physician")
    with pytest.raises(ValidationError) as exc:
        workflow.create_result(requested, rad, radiologist=doc2, result_date=date(2024, 1, 1), report="r",
                               report_style="fancy")
    assert set(exc.value.errors) == {"radiologist", "report_style"}
    db.session.refresh(requested)
    assert requested.state == "requested"


def test_update_result_before_finalising(app, reported, rad):
    result = reported.result
    first = _result_images_after_update(result, rad)
    assert first.report == "Revised." and first.report_style == "without_captions"
    assert [i.caption for i in first.images] == ["new"]
    assert events(reported)[-1] == ("rad", "requested", "result edited", "requested")
    assert len(image_files(app)) == 2


def _result_images_after_update(result, rad):
    return workflow.update_result(result, rad, radiologist=rad, result_date=date(2024, 5, 3), report="Revised.",
                                  report_style="without_captions", new_images=[NewImage(png_bytes(), "n.png", "new")])


def test_update_result_removes_images_and_their_files(app, requested, rad):
    result = _result(requested, rad, NewImage(png_bytes(), "a.png", "A"), NewImage(png_bytes(), "b.png", "B"))
    a, b = result.images
    workflow.update_result(result, rad, radiologist=rad, result_date=result.result_date, report=result.report,
                           report_style=result.report_style, captions={b.id: " B2 "}, remove_images=[a.id])
    db.session.commit()  # the files of removed images go once the edit is stored
    assert [(i.original_name, i.caption) for i in result.images] == [("b.png", "B2")]
    assert image_files(app) == sorted([b.stored_name, thumb_name(b.stored_name)])


def test_finalised_result_is_read_only(app, reported, rad):
    result = reported.result
    workflow.finalise_result(result, rad)
    assert result.is_final and result.finalised_by_id == rad.id
    assert events(reported)[-1] == ("rad", "done", "result finalised", "done")
    with pytest.raises(TransitionError, match="final"):
        _result_images_after_update(result, rad)
    db.session.refresh(result)
    assert result.report == "No acute findings." and result.images == []
    assert image_files(app) == []
    with pytest.raises(TransitionError, match="already final"):
        workflow.finalise_result(result, rad)


def test_an_empty_report_cannot_be_finalised(requested, rad):
    result = _result(requested, rad, report="   ")
    with pytest.raises(ValidationError):
        workflow.finalise_result(result, rad)
    assert not result.is_final


def test_addenda_only_on_final_results(reported, rad):
    result = reported.result
    with pytest.raises(TransitionError, match="final"):
        workflow.add_addendum(result, rad, "Also: small effusion.")
    assert result.addenda == []
    workflow.finalise_result(result, rad)
    with pytest.raises(ValidationError):
        workflow.add_addendum(result, rad, "   ")
    workflow.add_addendum(result, rad, "  Also: small effusion. ")
    db.session.refresh(result)
    assert [(a.text, a.author.username) for a in result.addenda] == [("Also: small effusion.", "rad")]
    assert events(reported)[-1] == ("rad", "done", "addendum", "done")
