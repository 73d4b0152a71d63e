"""Patient safety corpus: studies that try hard to land on the wrong order.

Every case is played against a real Orthanc 1.10.1 with pynetdicom as the
modality (C-STORE), through the incremental sync (``/changes``) and the
full sync (paged ``/studies``), and ends with the same check: no study is
linked to a request of another patient unless a person confirmed it with a
reason. The right links must still happen, and every study the rules
refuse waits in the Inbox with its reason in words.
"""

from __future__ import annotations

import re
from datetime import date

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import LinkEvent, OrthancServer, OrthancStudy, RequestEvent, StudyLink
from ghimaging.orthanc import matching, sync
from tests.support import dicomgen

TODAY = date.today().strftime("%Y%m%d")
SYNC_MODES = ("incremental", "full")


# -- the modality and the sync ---------------------------------------------------------------

def store(orthanc, *datasets: Dataset) -> None:
    """C-STORE the instances as a modality does (one association)."""
    ae = AE(ae_title="XRAY1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    assert assoc.is_established, orthanc.log_tail()
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            assert status is not None and status.Status == 0x0000, f"C-STORE answered {status}\n{orthanc.log_tail()}"
    finally:
        assoc.release()


def image(patient_id: str, name: str, *, uid: str | None = None, accession: str = "", birth: str = "",
          **kw) -> Dataset:
    return dicomgen.make_instance(patient_id, name, study_uid=uid or generate_uid(), accession=accession,
                                  modality="CR", study_date=TODAY, patient_birth_date=birth, rows=8, cols=8, **kw)


def synced(server_id: int, mode: str) -> None:
    """Bring the mirror up to date the way ``mode`` does it."""
    summary = sync.run(server_id, mode="full" if mode == "full" else "auto")
    assert summary.error == "" and not summary.skipped, summary
    if mode == "incremental":
        assert summary.mode == "incremental", summary


@pytest.fixture
def server(app, orthanc_row):
    """The Orthanc, mirrored once while empty, so the next automatic sync
    is incremental."""
    synced(orthanc_row.id, "full")
    return orthanc_row


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


@pytest.fixture
def people(create_patient):
    """Patients whose orders the studies below try to reach."""
    return {
        "D": create_patient(puid="D-100", family_name="Doe", given_name="Dana", birth_date=date(1970, 1, 2)),
        "E": create_patient(puid="E-200", family_name="Eriksen", given_name="Erik", birth_date=date(1981, 5, 6)),
        "M": create_patient(puid="M-300", family_name="Mora", given_name="Mia", birth_date=date(1990, 3, 4)),
        "N": create_patient(puid="N-400", family_name="Nakamura", given_name="Ken", birth_date=date(1960, 7, 8)),
        "42": create_patient(puid="42", family_name="Quarante", given_name="Deux", birth_date=date(1942, 4, 2)),
        "MG": create_patient(puid="MG-007", family_name="Bond", given_name="James", birth_date=date(1968, 11, 11)),
        "MU": create_patient(puid="MU-1", family_name="Müller", given_name="Jürgen", birth_date=date(1955, 2, 3)),
    }


@pytest.fixture
def order(create_request, catalog, doc):
    def make(patient, submit: bool = True):
        return create_request(patient, catalog["chest"], submit=submit, user=doc, physician=doc)
    return make


def study(ds: Dataset) -> OrthancStudy:
    db.session.expire_all()
    rows = db.session.scalars(select(OrthancStudy).where(OrthancStudy.study_uid == str(ds.StudyInstanceUID),
                                                         OrthancStudy.patient_id == str(ds.PatientID))).all()
    assert len(rows) == 1, f"{len(rows)} rows for {ds.PatientID}/{ds.StudyInstanceUID}"
    return rows[0]


def linked_requests(ds: Dataset) -> list[int]:
    return [lk.request_id for lk in matching.requests_of(study(ds))]


def assert_no_wrong_patient_link() -> None:
    """The invariant of the whole module: a link joins a study to a request
    of the patient whose PUID the study carries, or a person confirmed it."""
    db.session.expire_all()
    for link in db.session.scalars(select(StudyLink)):
        same = link.study.patient_id.strip() == link.request.patient.puid
        assert same or (link.other_patient and link.reason and link.method == "manual"), (
            f"study of PatientID {link.study.patient_id!r} linked to request {link.request.accession_number} "
            f"of {link.request.patient.puid!r} by {link.method}")


def reasons(ds: Dataset) -> list[str]:
    return matching.assess(study(ds)).reasons


# -- studies of one patient carrying another patient's numbers --------------------------------

@pytest.mark.parametrize("mode", SYNC_MODES)
@pytest.mark.parametrize("carries", ["accession", "uid", "both"])
def test_a_study_of_another_patient_carrying_the_orders_numbers_is_not_linked(
        app, orthanc, server, people, order, mode, carries):
    d_req = order(people["D"])
    ds = image("E-200", "Eriksen^Erik", birth="19810506",
               uid=d_req.study_instance_uid if carries in ("uid", "both") else None,
               accession=d_req.accession_number if carries in ("accession", "both") else "")
    store(orthanc, ds)
    synced(server.id, mode)
    assert linked_requests(ds) == []
    db.session.refresh(d_req)
    assert d_req.images_available is False
    why = " ".join(reasons(ds))
    assert f"request {d_req.accession_number}" in why and "another patient" in why
    assert "E-200" in why and "D-100" in why, "both identities, side by side"
    assert study(ds).id in [s.id for s in db.session.scalars(matching.unmatched())]
    assert_no_wrong_patient_link()


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_a_study_under_a_patient_id_nobody_has_is_not_linked_by_the_accession(
        app, orthanc, server, people, order, mode):
    d_req = order(people["D"])
    ds = image("NOBODY-9", "Doe^Dana", birth="19700102", accession=d_req.accession_number)
    store(orthanc, ds)
    synced(server.id, mode)
    assert linked_requests(ds) == []
    assert "NOBODY-9" in " ".join(reasons(ds))
    assert_no_wrong_patient_link()


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_two_patients_reusing_one_accession_link_only_the_patients_own_study(
        app, orthanc, server, people, order, mode):
    d_req = order(people["D"])
    own = image("D-100", "Doe^Dana", birth="19700102", accession=d_req.accession_number)
    alien = image("E-200", "Eriksen^Erik", birth="19810506", accession=d_req.accession_number)
    store(orthanc, own, alien)
    synced(server.id, mode)
    assert linked_requests(own) == [d_req.id]
    assert linked_requests(alien) == []
    assert_no_wrong_patient_link()


@pytest.mark.parametrize("mode", SYNC_MODES)
@pytest.mark.parametrize("key, sent, why", [
    ("42", "0042", "leading zeros"),
    ("MG", "mg-007", "letter case"),
    ("MG", "MG -007", "spaces"),
])
def test_an_id_that_differs_only_by_case_zeros_or_spaces_is_another_patient_but_suggested(
        app, orthanc, server, people, order, login, mode, key, sent, why):
    patient = people[key]
    req = order(patient)
    ds = image(sent, f"{patient.family_name}^{patient.given_name}", uid=req.study_instance_uid,
               accession=req.accession_number)
    store(orthanc, ds)
    synced(server.id, mode)
    assert linked_requests(ds) == []
    assert f"only by {why}" in " ".join(reasons(ds))
    sugs = matching.suggestions(study(ds))
    assert sugs and sugs[0].request.id == req.id and not sugs[0].same_patient
    assert any(f"only by {why}" in r for r in sugs[0].reasons)
    assert_no_wrong_patient_link()


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_the_patients_own_study_with_another_name_is_linked_with_a_flag_until_someone_checks(
        app, orthanc, server, people, order, login, make_user, mode):
    d_req = order(people["D"])
    ds = image("D-100", "Smith^John", birth="19700102", uid=d_req.study_instance_uid)
    store(orthanc, ds)
    synced(server.id, mode)
    assert linked_requests(ds) == [d_req.id]
    link = matching.requests_of(study(ds))[0]
    assert "name in the study (Smith, John" in link.warning and "Doe, Dana" in link.warning
    assert link.needs_review
    make_user("tech", "technologist")
    tech = login("tech")
    page = tech.get(f"/requests/{d_req.id}").get_data(as_text=True)
    assert re.search(r'id="identity-\d+"><strong>Check the identity of the linked images.</strong> The name in the study',
                     page)
    inbox = tech.get("/orthanc/unmatched").get_data(as_text=True)
    review = re.search(r'<table class="table" id="review">.*?</table>', inbox, re.S)
    assert review and d_req.accession_number in review.group(0) and "differs" in review.group(0)
    r = tech.post(f"/orthanc/links/{link.id}/confirm", {"back": "/orthanc/unmatched"}, token_from="/orthanc/unmatched")
    assert r.status_code == 302
    db.session.expire_all()
    assert not db.session.get(StudyLink, link.id).needs_review
    assert 'id="review"' not in tech.get("/orthanc/unmatched").get_data(as_text=True)
    events = [e.action for e in matching.history(study(ds))]
    assert events == ["link", "confirm"]


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_a_different_birth_date_is_flagged_and_names_match_across_case_accents_and_groups(
        app, orthanc, server, people, order, mode):
    d_req, mu_req = order(people["D"]), order(people["MU"])
    wrong_birth = image("D-100", "DOE^DANA", birth="19700201", uid=d_req.study_instance_uid)
    # German modality spelling, upper case, plus an ideographic group: the same person.
    same = image("MU-1", "MUELLER^JUERGEN=ミュラー^ユルゲン", birth="19550203", uid=mu_req.study_instance_uid,
                 charset="ISO_IR 192")
    store(orthanc, wrong_birth, same)
    synced(server.id, mode)
    d_link = matching.requests_of(study(wrong_birth))[0]
    assert "birth date in the study (1970-02-01)" in d_link.warning and "name" not in d_link.warning
    mu_link = matching.requests_of(study(same))[0]
    assert mu_link.request_id == mu_req.id and mu_link.warning == ""
    assert_no_wrong_patient_link()


# -- one StudyInstanceUID under two PatientIDs -------------------------------------------------

@pytest.mark.parametrize("mode", (*SYNC_MODES, "reconcile"))
def test_one_uid_under_two_patient_ids_is_two_studies_both_flagged_neither_linked(
        app, orthanc, server, people, order, mode):
    m_req = order(people["M"])
    m_ds = image("M-300", "Mora^Mia", birth="19900304", uid=m_req.study_instance_uid)
    n_ds = image("N-400", "Nakamura^Ken", birth="19600708", uid=m_req.study_instance_uid)
    store(orthanc, m_ds, n_ds)
    synced(server.id, "full" if mode == "full" else "incremental")
    if mode == "reconcile":
        assert sync.run(server.id, mode="reconcile").error == ""
        assert sync.run(server.id).mode == "incremental"
    db.session.expire_all()
    rows = db.session.scalars(select(OrthancStudy).where(OrthancStudy.study_uid == m_req.study_instance_uid)).all()
    assert sorted(r.patient_id for r in rows) == ["M-300", "N-400"]
    assert all(r.uid_shared for r in rows)
    assert linked_requests(m_ds) == [] and linked_requests(n_ds) == []
    assert "shared by studies of two patients" in " ".join(reasons(m_ds))
    assert "shared by two patients" in " ".join(matching.warnings_of(study(n_ds))).replace("studies of ", "")
    assert db.session.get(OrthancServer, server.id).needs_full_sync is False, "no endless full syncs"
    assert_no_wrong_patient_link()


def test_a_second_patient_arriving_with_a_linked_uid_flags_the_link_and_stays_unlinked(
        app, orthanc, server, people, order):
    m_req = order(people["M"])
    m_ds = image("M-300", "Mora^Mia", birth="19900304", uid=m_req.study_instance_uid)
    store(orthanc, m_ds)
    synced(server.id, "incremental")
    assert linked_requests(m_ds) == [m_req.id]
    n_ds = image("N-400", "Nakamura^Ken", birth="19600708", uid=m_req.study_instance_uid)
    store(orthanc, n_ds)
    synced(server.id, "incremental")
    assert linked_requests(n_ds) == []
    link = matching.requests_of(study(m_ds))[0]
    assert "also used by a study of another patient" in link.warning and link.needs_review
    # The first study's images stay M's: the request still shows exactly one study, M's.
    assert [lk.study.patient_id for lk in matching.studies_of(m_req)] == ["M-300"]
    for _ in range(2):
        assert sync.run(server.id, mode="reconcile").error == ""
        assert db.session.get(OrthancServer, server.id).needs_full_sync is False
    assert db.session.scalar(select(func.count()).select_from(OrthancStudy)) == 2
    # One of the two goes: the other is no longer flagged.
    orthanc.delete_study(study(n_ds).orthanc_id)
    assert sync.run(server.id, mode="reconcile").error == ""
    assert study(m_ds).uid_shared is False
    assert_no_wrong_patient_link()


# -- numbers that disagree, requests that cannot take images -------------------------------------

@pytest.mark.parametrize("mode", SYNC_MODES)
def test_a_uid_and_an_accession_naming_two_requests_link_neither(app, orthanc, server, people, order, mode):
    first, second = order(people["D"]), order(people["D"])
    ds = image("D-100", "Doe^Dana", birth="19700102", uid=first.study_instance_uid,
               accession=second.accession_number)
    store(orthanc, ds)
    synced(server.id, mode)
    assert linked_requests(ds) == []
    assert f"names request {first.accession_number} but its AccessionNumber names request " \
           f"{second.accession_number}" in " ".join(reasons(ds))


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_drafts_and_cancelled_requests_take_no_study(app, orthanc, server, people, order, doc, mode):
    draft = order(people["D"], submit=False)
    cancelled = order(people["E"])
    workflow.cancel(cancelled, doc, "Patient left")
    d_ds = image("D-100", "Doe^Dana", birth="19700102", uid=draft.study_instance_uid)
    e_ds = image("E-200", "Eriksen^Erik", birth="19810506", accession=cancelled.accession_number)
    store(orthanc, d_ds, e_ds)
    synced(server.id, mode)
    assert linked_requests(d_ds) == [] and linked_requests(e_ds) == []
    assert "still a draft" in " ".join(reasons(d_ds))
    assert "cancelled" in " ".join(reasons(e_ds))


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_the_right_studies_still_link_by_uid_by_accession_and_by_an_accession_with_spaces(
        app, orthanc, server, people, order, mode):
    by_uid, by_acc, spaced = order(people["D"]), order(people["E"]), order(people["N"])
    store(orthanc,
          image("D-100", "Doe^Dana", birth="19700102", uid=by_uid.study_instance_uid),
          image("E-200", "Eriksen^Erik", birth="19810506", accession=by_acc.accession_number),
          image("N-400", "Nakamura^Ken", birth="19600708", extra={"AccessionNumber": " " + spaced.accession_number}))
    synced(server.id, mode)
    db.session.expire_all()
    got = {lk.request_id: lk.method for lk in db.session.scalars(select(StudyLink))}
    assert got == {by_uid.id: "study_uid", by_acc.id: "accession", spaced.id: "accession"}
    assert all(not lk.warning for lk in db.session.scalars(select(StudyLink)))
    assert_no_wrong_patient_link()


# -- the Inbox and linking by hand ------------------------------------------------------------------

def test_the_inbox_offers_the_same_patient_first_and_others_only_under_a_different_patient_heading(
        app, orthanc, server, people, order, make_user, login):
    d_req = order(people["D"])      # the patient's own, waiting
    e_req = order(people["E"])      # another patient: same modality, same day
    ds = image("D-100", "Doe^Dana", birth="19700102")  # numbers rewritten by the modality
    store(orthanc, ds)
    synced(server.id, "incremental")
    sugs = matching.suggestions(study(ds))
    assert [(s.request.id, s.same_patient) for s in sugs] == [(d_req.id, True), (e_req.id, False)]
    make_user("tech", "technologist")
    page = login("tech").get("/orthanc/unmatched").get_data(as_text=True)
    row = re.search(r'<table class="table" id="unmatched">.*?</table>', page, re.S).group(0)
    same_at, other_at = row.index("Same patient"), row.index("Different patient")
    assert same_at < row.index(d_req.accession_number) < other_at < row.index(e_req.accession_number)
    assert "No request carries this study" in row


def test_a_study_with_nothing_in_common_but_modality_and_date_of_another_patient_is_not_suggested_once_imaged(
        app, orthanc, server, people, order):
    e_req = order(people["E"])
    store(orthanc, image("E-200", "Eriksen^Erik", birth="19810506", uid=e_req.study_instance_uid))
    ds = image("ZZ-1", "Walk^In")
    store(orthanc, ds)
    synced(server.id, "incremental")
    assert [s.request.id for s in matching.suggestions(study(ds))] == []


def test_linking_another_patients_study_by_hand_needs_a_confirmation_and_a_reason_and_stays_red(
        app, orthanc, server, people, order, make_user, login, api):
    d_req = order(people["D"])
    ds = image("E-200", "Eriksen^Erik", birth="19810506", accession=d_req.accession_number)
    store(orthanc, ds)
    synced(server.id, "incremental")
    sid = study(ds).id
    client = api("technologist")
    r = client.post(f"/api/v1/studies/{sid}/link", json={"request_id": d_req.id})
    assert r.status_code == 409 and r.json["error"] == "other_patient" and "E-200" in r.json["message"]
    r = client.post(f"/api/v1/studies/{sid}/link", json={"request_id": d_req.id, "confirm_other_patient": True,
                                                          "reason": "   "})
    assert r.status_code == 409
    r = client.post(f"/api/v1/studies/{sid}/link", json={"request_id": d_req.id, "confirm_other_patient": "yes",
                                                          "reason": "x"})
    assert r.status_code == 422
    assert linked_requests(ds) == []

    make_user("tech", "technologist")
    tech = login("tech")
    r = tech.post(f"/orthanc/studies/{sid}/link", {"request_id": d_req.id, "back": "/orthanc/unmatched"},
                  token_from="/orthanc/unmatched")
    assert r.status_code == 302 and "/link-other" in r.headers["Location"]
    confirm_page = tech.get(r.headers["Location"]).get_data(as_text=True)
    table = re.search(r'<table class="table compact" id="identities">.*?</table>', confirm_page, re.S).group(0)
    assert "E-200" in table and "D-100" in table and "Eriksen" in table and "Doe, Dana" in table
    r = tech.post(f"/orthanc/studies/{sid}/link", {"request_id": d_req.id, "confirm_other_patient": "yes",
                                                    "reason": ""}, token_from="/orthanc/unmatched")
    assert linked_requests(ds) == []
    r = tech.post(f"/orthanc/studies/{sid}/link", {"request_id": d_req.id, "confirm_other_patient": "yes",
                                                    "reason": "Wrong ID typed at the modality; checked with the patient"},
                  token_from="/orthanc/unmatched")
    assert r.status_code == 302
    assert linked_requests(ds) == [d_req.id]
    link = matching.requests_of(study(ds))[0]
    assert link.other_patient and link.reason.startswith("Wrong ID typed")
    event = db.session.scalar(select(RequestEvent).where(RequestEvent.request_id == d_req.id,
                                                        RequestEvent.action == "other patient's study"))
    assert event is not None and "E-200" in event.note and "Wrong ID typed" in event.note
    got = client.get(f"/api/v1/studies/{sid}").json
    assert any("another patient" in w for w in got["warnings"])
    got = client.get(f"/api/v1/requests/{d_req.id}").json
    assert [(s["patient_id"], s["other_patient"], s["reason"][:14]) for s in got["studies"]] == [
        ("E-200", True, "Wrong ID typed")]
    page = tech.get(f"/requests/{d_req.id}").get_data(as_text=True)
    alert = re.search(r'<div class="flash flash-error" role="alert" id="other-patient-\d+">.*?</div>', page, re.S)
    assert alert and "Images of another patient" in alert.group(0) and "E-200" in alert.group(0)
    assert "Wrong ID typed" in alert.group(0)
    assert re.search(r'<li class="error"><span class="when">[^<]*</span> <strong>Other patient(?:&#39;|\')s study</strong>',
                     page), "the request's history shows it in red"
    link_event = next(e for e in matching.history(study(ds)) if e.action == "link")
    assert "Reason: Wrong ID typed" in link_event.note
    assert_no_wrong_patient_link()
    # Unlinked again, the request's history still says it happened.
    matching.unlink(study(ds), d_req, None)
    db.session.commit()  # the page below is another session
    assert db.session.scalar(select(func.count()).select_from(RequestEvent).where(
        RequestEvent.request_id == d_req.id, RequestEvent.action == "other patient's study")) == 1
    page = tech.get(f"/requests/{d_req.id}").get_data(as_text=True)
    assert "Images of another patient" not in page and '<li class="error">' in page


def test_the_unmatched_api_gives_reasons_in_sentences(app, orthanc, server, people, order, api):
    d_req = order(people["D"])
    ds = image("E-200", "Eriksen^Erik", birth="19810506", accession=d_req.accession_number)
    store(orthanc, ds)
    synced(server.id, "incremental")
    items = api("radiologist").get("/api/v1/studies/unmatched").json["items"]
    assert len(items) == 1
    assert items[0]["reasons"] and all(r.endswith(".") for r in items[0]["reasons"])
    assert "another patient" in items[0]["reasons"][0]


def test_a_manual_unlink_is_never_undone_by_a_full_sync(app, orthanc, server, people, order):
    d_req = order(people["D"])
    ds = image("D-100", "Doe^Dana", birth="19700102", uid=d_req.study_instance_uid)
    store(orthanc, ds)
    synced(server.id, "incremental")
    matching.unlink(study(ds), d_req, None)
    synced(server.id, "full")
    assert linked_requests(ds) == []
    assert "unlinked this study" in " ".join(reasons(ds))
    assert db.session.scalar(select(func.count()).select_from(LinkEvent).where(LinkEvent.action == "link")) == 1


# -- found in review -------------------------------------------------------------------------------

def test_an_orthanc_patient_linked_by_hand_does_not_make_its_studies_the_patients_own(
        app, orthanc, server, people, order, api):
    """One PUID typed on the Orthanc patient page is not the confirmation
    and reason a study of another PatientID needs."""
    from ghimaging.orthanc import links

    d_req = order(people["D"])
    ds = image("E-200", "Eriksen^Erik", birth="19810506")
    store(orthanc, ds)
    synced(server.id, "incremental")
    links.link_patient(study(ds).patient_row, people["D"], None)
    db.session.commit()
    sugs = matching.suggestions(study(ds))
    assert [(s.request.id, s.same_patient) for s in sugs] == [(d_req.id, False)]
    assert "Orthanc patient linked to this patient by hand" in sugs[0].reasons
    r = api("technologist").post(f"/api/v1/studies/{study(ds).id}/link", json={"request_id": d_req.id})
    assert r.status_code == 409 and r.json["error"] == "other_patient"
    assert_no_wrong_patient_link()


@pytest.mark.parametrize("day", ["00010101", "99991231", "20261399"])
def test_a_study_dated_at_the_ends_of_the_calendar_does_not_break_the_inbox(
        app, orthanc, server, people, order, make_user, login, api, day):
    order(people["D"])
    ds = image("ZZ-9", "Walk^In")
    ds.StudyDate = day
    store(orthanc, ds)
    synced(server.id, "incremental")
    make_user("tech", "technologist")
    tech = login("tech")
    assert tech.get("/orthanc/unmatched").status_code == 200
    assert tech.get(f"/orthanc/studies/{study(ds).id}").status_code == 200
    assert api("radiologist").get("/api/v1/studies/unmatched").status_code == 200


@pytest.mark.parametrize("back", ["/\\evil.example/x", "//evil.example/x", "https://evil.example/x", "/\tevil"])
def test_the_inbox_never_sends_anyone_to_another_site(app, orthanc, server, people, order, make_user, login, back):
    d_req = order(people["D"])
    ds = image("E-200", "Eriksen^Erik", accession=d_req.accession_number)
    store(orthanc, ds)
    synced(server.id, "incremental")
    make_user("tech", "technologist")
    tech = login("tech")
    page = tech.get(f"/orthanc/studies/{study(ds).id}/link-other",
                    query_string={"request_id": d_req.id, "back": back}).get_data(as_text=True)
    assert "evil" not in page
    r = tech.post(f"/orthanc/studies/{study(ds).id}/unlink", {"request_id": d_req.id, "back": back},
                  token_from="/orthanc/unmatched")
    assert "evil" not in r.headers.get("Location", "")


def test_deleting_one_of_two_studies_sharing_a_uid_clears_the_flag_of_the_other(
        app, orthanc, server, people, order, make_user, login):
    m_req = order(people["M"])
    m_ds = image("M-300", "Mora^Mia", birth="19900304", uid=m_req.study_instance_uid)
    n_ds = image("N-400", "Nakamura^Ken", birth="19600708", uid=m_req.study_instance_uid)
    store(orthanc, m_ds, n_ds)
    synced(server.id, "incremental")
    assert study(m_ds).uid_shared and study(n_ds).uid_shared
    make_user("boss", "admin")
    boss = login("boss")
    n_id = study(n_ds).id
    r = boss.post(f"/orthanc/studies/{n_id}/delete", {"confirm": m_req.study_instance_uid},
                  token_from=f"/orthanc/studies/{n_id}")
    assert r.status_code == 302
    assert study(m_ds).uid_shared is False
