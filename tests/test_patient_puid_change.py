"""A PUID that images already carry (issue 13 §5): read-only but to an
administrator, who must give a reason; the change is recorded (who, when,
old -> new, why), the waiting worklist items are rewritten with the new
PatientID, and the studies made under the old PUID stay this patient's
(``orthanc.identity.same_patient``) while a study with any other PatientID,
or with an old PUID someone else has had since, is still another patient's.

A real Orthanc holds the studies; ghimaging's sync finds and links them.
Each test here failed on the code before the change (the PUID was editable
by anyone, nothing was recorded, and the old PatientID made the studies
another patient's), but for the refusals of other PatientIDs, which are
guards: they passed before and fail on a looser rule (checked with one
that took any PatientID beginning "old-1", whatever its case)."""

from __future__ import annotations

import html
import re
from datetime import date
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import OrthancStudy, Patient, StudyLink
from ghimaging.models.patients import PuidChange
from ghimaging.orthanc import linking, sync
from ghimaging.orthanc.identity import same_patient
from ghimaging.orthanc.rules import assess
from ghimaging.patients import service as patients
from tests.support import dicomgen


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def staff(make_user):
    return {"doc": make_user("doc", "physician"), "tech": make_user("tech", "technologist"),
            "admin": make_user("boss", "admin", full_name="Ada Admin")}


@pytest.fixture
def imaged(app, staff, create_patient, create_request, catalog, orthanc_row, upload):
    """Patient OLD-1 with two waiting requests; a study of the first (its
    AccessionNumber, PatientID OLD-1) is in Orthanc, synced and linked."""
    p = create_patient(puid="OLD-1", family_name="Quispe", given_name="Rosa", birth_date=date(1980, 2, 3))
    first = create_request(p, submit=True, user=staff["doc"], physician=staff["doc"])
    second = create_request(p, catalog["abd"], submit=True, user=staff["doc"], physician=staff["doc"])
    upload([dicomgen.make_instance("OLD-1", "QUISPE^ROSA", accession=first.accession_number,
                                   patient_birth_date="19800203")])
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.patient_id == "OLD-1"))
    assert study is not None
    assert db.session.scalar(select(StudyLink).where(StudyLink.study_id == study.id)).request_id == first.id
    return {"patient": p, "first": first, "second": second, "study": study}


def synced(row) -> None:
    summary = sync.run(row.id)
    assert summary.error == "", summary.error
    db.session.expire_all()


def study_with(orthanc_row, upload, patient_id: str) -> OrthancStudy:
    upload([dicomgen.make_instance(patient_id, "QUISPE^ROSA", patient_birth_date="19800203")])
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.patient_id == patient_id))
    assert study is not None
    return study


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def edit_form(p: Patient, **kw) -> dict:
    data = {"puid": p.puid, "family_name": p.family_name, "given_name": p.given_name,
            "birth_date": p.birth_date.isoformat() if p.birth_date else "", "sex": p.sex}
    data.update(kw)
    return data


def puid_now(patient_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Patient, patient_id).puid


def wl_patient_id(app, req) -> str:
    path = Path(app.config["WORKLIST_DIR"]) / f"{req.accession_number}.wl"
    return str(pydicom.dcmread(path).PatientID)


# -- who may change it ------------------------------------------------------------

def test_staff_see_a_puid_with_images_read_only_and_cannot_change_it(imaged, login):
    p = imaged["patient"]
    tech = login("tech")
    body = page(tech.get(f"/patients/{p.id}/edit"))
    assert re.search(r'<input type="text" id="puid" name="puid" value="OLD-1" readonly', body)
    assert "only an administrator can change it" in body
    r = tech.post(f"/patients/{p.id}/edit", edit_form(p, puid="NEW-1", puid_reason="typo"),
                  token_from=f"/patients/{p.id}/edit")
    assert puid_now(p.id) == "OLD-1"
    assert db.session.scalars(select(PuidChange)).all() == []
    assert r.status_code in (302, 400)


def test_the_service_refuses_a_non_administrator_whatever_the_caller(imaged, staff):
    p = imaged["patient"]
    with pytest.raises(patients.PatientError) as err:
        patients.update_patient(p, edit_form(p, puid="NEW-1"), user=staff["tech"], reason="typo")
    assert "puid" in err.value.errors
    db.session.rollback()
    assert puid_now(p.id) == "OLD-1"


def test_an_administrator_must_give_a_reason(imaged, login):
    p = imaged["patient"]
    admin = login("boss")
    body = page(admin.get(f"/patients/{p.id}/edit"))
    assert 'name="puid_reason"' in body
    r = admin.post(f"/patients/{p.id}/edit", edit_form(p, puid="NEW-1", puid_reason="   "),
                   token_from=f"/patients/{p.id}/edit")
    assert r.status_code == 400
    assert "Say why the PUID changes" in page(r)
    assert puid_now(p.id) == "OLD-1"


def test_a_puid_without_images_stays_editable_by_staff_and_is_not_recorded(staff, create_patient, login):
    p = create_patient(puid="TYPO-1")
    tech = login("tech")
    r = tech.post(f"/patients/{p.id}/edit", edit_form(p, puid="FIXED-1"), token_from=f"/patients/{p.id}/edit")
    assert r.status_code == 302
    assert puid_now(p.id) == "FIXED-1"
    assert db.session.scalars(select(PuidChange)).all() == []


def test_images_received_unlinked_under_the_puid_lock_it_too(staff, create_patient, orthanc_row, upload, login):
    p = create_patient(puid="LOOSE-1")
    study_with(orthanc_row, upload, "LOOSE-1")
    r = login("tech").post(f"/patients/{p.id}/edit", edit_form(p, puid="LOOSE-2"),
                           token_from=f"/patients/{p.id}/edit")
    assert r.status_code in (302, 400)
    assert puid_now(p.id) == "LOOSE-1"


# -- the change and where it follows ---------------------------------------------------

def test_the_change_is_recorded_shown_and_rewrites_the_waiting_worklist_items(app, imaged, login, staff):
    p, second = imaged["patient"], imaged["second"]
    assert wl_patient_id(app, second) == "OLD-1"
    admin = login("boss")
    r = admin.post(f"/patients/{p.id}/edit", edit_form(p, puid="NEW-1", puid_reason="Register merged two ids"),
                   token_from=f"/patients/{p.id}/edit")
    assert r.status_code == 302, page(r)[:3000]
    assert puid_now(p.id) == "NEW-1"
    change = db.session.scalars(select(PuidChange)).one()
    assert (change.patient_id, change.old_puid, change.new_puid, change.reason, change.changed_by_id,
            change.changed_by_name) == (p.id, "OLD-1", "NEW-1", "Register merged two ids", staff["admin"].id,
                                        "Ada Admin")
    assert change.changed_at is not None
    assert wl_patient_id(app, second) == "NEW-1"
    body = page(admin.get(f"/patients/{p.id}"))
    assert "OLD-1 → NEW-1" in body and "Register merged two ids" in body and "Ada Admin" in body


def registered_before_the_rule(puid: str) -> Patient:
    """A patient holding another patient's former PUID. The service now
    refuses that (tests/test_puid_reuse.py), but a database from before
    the rule may hold one, and the identity rules must still not give the
    old patient's images to either: written as that database has it."""
    p = Patient(puid=puid, family_name="Mamani", given_name="Luis", sex="M")
    p.refresh_search_key()
    db.session.add(p)
    db.session.commit()
    return p


def change_puid(p: Patient, new: str, admin) -> None:
    patients.update_patient(p, edit_form(p, puid=new), user=admin, reason="Register correction")
    db.session.commit()


def test_studies_under_the_old_puid_stay_the_patients(imaged, staff):
    p, study, second = imaged["patient"], imaged["study"], imaged["second"]
    change_puid(p, "NEW-1", staff["admin"])
    db.session.expire_all()
    assert same_patient(study, p)
    made = linking.link(study, second, staff["tech"])  # no other-patient confirmation needed
    assert not made.other_patient
    change_puid(p, "NEWER-1", staff["admin"])  # a second change: both old ones still count
    db.session.expire_all()
    assert same_patient(study, p)


def test_a_study_with_a_third_patient_id_is_still_another_patients(imaged, staff, orthanc_row, upload):
    p, second = imaged["patient"], imaged["second"]
    change_puid(p, "NEW-1", staff["admin"])
    for other in ("OTHER-9", "old-1", "OLD-10", "NEW-1 X"):
        study = study_with(orthanc_row, upload, other)
        assert not same_patient(study, p), other
        with pytest.raises(linking.OtherPatientError):
            linking.link(study, second, staff["tech"])
        db.session.rollback()


def test_an_old_puid_given_to_someone_else_since_is_theirs_not_the_old_patients(imaged, staff, create_patient):
    p, study = imaged["patient"], imaged["study"]
    change_puid(p, "NEW-1", staff["admin"])
    newcomer = registered_before_the_rule("OLD-1")
    db.session.expire_all()
    assert not same_patient(study, p)
    assert same_patient(study, newcomer)


def test_an_old_puid_two_patients_have_had_is_nobodys_old_puid(imaged, staff, create_patient, create_request,
                                                                orthanc_row, upload):
    """A had OLD-1, then B (registered with it once it was free, with
    images of their own) had it, then B's changed too: a study with OLD-1
    can be either's, so it is neither's without a person deciding."""
    p, study = imaged["patient"], imaged["study"]
    change_puid(p, "NEW-1", staff["admin"])
    b = registered_before_the_rule("OLD-1")
    assert patients.has_studies(b)  # the study in Orthanc carries OLD-1
    change_puid(b, "B-2", staff["admin"])
    db.session.expire_all()
    assert not same_patient(study, p)
    assert not same_patient(study, db.session.get(Patient, b.id))


def test_the_desk_lists_unlinked_studies_under_the_old_puid_and_not_someone_elses(imaged, staff, orthanc_row,
                                                                                  upload, create_patient):
    """The reporting desk's "studies in Orthanc that answer no request"
    include those made under the patient's old PUID, and stop including
    them once that PUID has been given to someone else."""
    from ghimaging.imaging.desk import unlinked_studies

    p, second = imaged["patient"], imaged["second"]
    change_puid(p, "NEW-1", staff["admin"])
    study_with(orthanc_row, upload, "OLD-1")  # a second study, unlinked: no accession
    old = db.session.scalar(select(OrthancStudy).where(OrthancStudy.patient_id == "OLD-1",
                                                       OrthancStudy.id != imaged["study"].id))
    assert old is not None
    other = study_with(orthanc_row, upload, "OTHER-9")
    listed = {u.study.id for u in unlinked_studies(second)}
    assert old.id in listed and other.id not in listed
    registered_before_the_rule("OLD-1")
    db.session.expire_all()
    assert old.id not in {u.study.id for u in unlinked_studies(db.session.get(type(second), second.id))}


# -- the sync links a later study under the old PUID, and only that one ----------------

def linked_to(study_id: int) -> list[int]:
    db.session.expire_all()
    return list(db.session.scalars(select(StudyLink.request_id).where(StudyLink.study_id == study_id)))


def late_study(orthanc_row, upload, patient_id: str, accession: str) -> OrthancStudy:
    """A study made under ``patient_id`` for the request with ``accession``,
    sent to Orthanc after the PUID changed and found by the sync."""
    upload([dicomgen.make_instance(patient_id, "QUISPE^ROSA", accession=accession,
                                   patient_birth_date="19800203")])
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.patient_id == patient_id,
                                                         OrthancStudy.accession_number == accession))
    assert study is not None
    return study


def test_the_sync_links_a_later_study_under_the_old_puid_by_its_accession(imaged, staff, orthanc_row, upload):
    """The modality still had OLD-1 (a worklist item fetched before the
    change, or typed from the old label): the study names the second
    request by its AccessionNumber and is the patient's, so the sync links
    it without a person, as it would have before the change."""
    p, second = imaged["patient"], imaged["second"]
    change_puid(p, "NEW-1", staff["admin"])
    study = late_study(orthanc_row, upload, "OLD-1", second.accession_number)
    assert linked_to(study.id) == [second.id]


@pytest.mark.parametrize("patient_id", ["OLD-10", "old-1"])
def test_the_sync_still_refuses_another_patient_id_with_the_requests_accession(imaged, staff, orthanc_row,
                                                                               upload, patient_id):
    """The accession alone never makes a study the patient's: a PatientID
    that is neither the PUID nor an old one (a longer id, another letter
    case) is refused as before the change."""
    p, second = imaged["patient"], imaged["second"]
    change_puid(p, "NEW-1", staff["admin"])
    study = late_study(orthanc_row, upload, patient_id, second.accession_number)
    assert linked_to(study.id) == []
    reasons = " ".join(assess(study).reasons)
    assert second.accession_number in reasons and f"\u201c{patient_id}\u201d" in reasons


def test_the_sync_refuses_an_old_puid_someone_else_has_had_since(imaged, staff, orthanc_row, upload,
                                                                 create_patient):
    p, second = imaged["patient"], imaged["second"]
    change_puid(p, "NEW-1", staff["admin"])
    registered_before_the_rule("OLD-1")
    study = late_study(orthanc_row, upload, "OLD-1", second.accession_number)
    assert linked_to(study.id) == []
    assert "another patient" in " ".join(assess(study).reasons)
