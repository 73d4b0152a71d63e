"""A PUID that images already carry never quietly becomes another
patient's: a former PUID (recorded when an administrator changed it) is
refused to anyone else, at the desk, the API and an update; the clinic's
allocation skips former PUIDs and PatientIDs that studies in Orthanc carry
(a walk-in's, typed at the modality); and a patient given a PUID that
studies carry takes them over only by an administrator with a reason.

A real Orthanc holds the studies; ghimaging's sync mirrors them. Each test
here failed on the code before the change (checked by running it there),
but those marked as guards, which pin what stays allowed."""

from __future__ import annotations

import html
import re
from datetime import date

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import OrthancStudy, Patient
from ghimaging.models.patients import PuidChange
from ghimaging.orthanc import sync
from ghimaging.orthanc.identity import same_patient
from ghimaging.patients import service as patients
from ghimaging.settings import service as settings
from tests.support import dicomgen


@pytest.fixture
def staff(make_user):
    return {"tech": make_user("tech", "technologist"), "admin": make_user("boss", "admin", full_name="Ada Admin")}


def synced(row) -> None:
    summary = sync.run(row.id)
    assert summary.error == "", summary.error
    db.session.expire_all()


def images_under(orthanc_row, upload, patient_id: str, name: str = "QUISPE^ROSA") -> OrthancStudy:
    """A study with PatientID ``patient_id`` stored in Orthanc and mirrored."""
    upload([dicomgen.make_instance(patient_id, name, patient_birth_date="19800203")])
    synced(orthanc_row)
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.patient_id == patient_id))
    assert study is not None
    return study


@pytest.fixture
def moved(staff, create_patient, orthanc_row, upload):
    """Quispe had OLD-1, images were made under it, then an administrator
    changed her PUID to NEW-1: the images still carry OLD-1."""
    p = create_patient(puid="OLD-1", family_name="Quispe", given_name="Rosa", birth_date=date(1980, 2, 3))
    study = images_under(orthanc_row, upload, "OLD-1")
    patients.update_patient(p, {**patients.to_json(p), "puid": "NEW-1"}, user=staff["admin"],
                            reason="Register correction")
    db.session.commit()
    return {"patient": p, "study": study}


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def patient_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Patient))


def form(p: Patient, **kw) -> dict:
    data = {"puid": p.puid, "family_name": p.family_name, "given_name": p.given_name,
            "birth_date": p.birth_date.isoformat() if p.birth_date else "", "sex": p.sex}
    data.update(kw)
    return data


# -- a former PUID is nobody else's ----------------------------------------------------

def test_the_desk_cannot_register_someone_else_under_a_former_puid(moved, login):
    tech = login("tech")
    r = tech.post("/patients/new", {"puid": "OLD-1", "family_name": "Mamani", "given_name": "Luis", "sex": "M"},
                  token_from="/patients/new")
    assert r.status_code == 400
    body = page(r)
    assert re.search(r"PUID OLD-1 belonged to Quispe, Rosa \(now NEW-1\) until \d{4}-\d\d-\d\d; "
                     r"images may carry it: choose another\.", body), body[:3000]
    assert patient_count() == 1
    db.session.expire_all()
    assert same_patient(moved["study"], db.session.get(Patient, moved["patient"].id))


def test_the_api_refuses_a_former_puid_with_409(moved, api):
    r = api("technologist").post("/api/v1/patients", json={"puid": "OLD-1", "family_name": "Mamani", "sex": "M"})
    assert r.status_code == 409, r.json
    assert r.json["error"] == "conflict" and "belonged to Quispe, Rosa" in r.json["message"]
    assert patient_count() == 1


def test_no_patient_is_changed_to_another_patients_former_puid(moved, staff, create_patient, login):
    other = create_patient(puid="B-1", family_name="Mamani", given_name="Luis")
    with pytest.raises(patients.PatientError) as err:
        patients.update_patient(other, form(other, puid="OLD-1"), user=staff["admin"], reason="typed")
    assert "belonged to Quispe, Rosa" in err.value.errors["puid"]
    db.session.rollback()
    r = login("tech").post(f"/patients/{other.id}/edit", form(other, puid="OLD-1"),
                           token_from=f"/patients/{other.id}/edit")
    assert r.status_code == 400 and "images may carry it: choose another" in page(r)
    db.session.expire_all()
    assert db.session.get(Patient, other.id).puid == "B-1"


def test_guard_a_patient_may_take_back_their_own_former_puid(moved, staff):
    p = moved["patient"]
    patients.update_patient(p, form(p, puid="OLD-1"), user=staff["admin"], reason="Back to the register's id")
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Patient, p.id).puid == "OLD-1"


# -- allocation skips PUIDs that images carry ------------------------------------------------

def test_allocation_skips_a_former_puid_and_a_walk_ins_patient_id(staff, create_patient, orthanc_row, upload):
    """P-000001 was typed by hand for Quispe, carries images, and was
    changed since; P-000002 is what a modality typed for a walk-in not yet
    registered. Neither is given to a new patient."""
    first = create_patient(puid="P-000001", family_name="Quispe", given_name="Rosa")
    images_under(orthanc_row, upload, "P-000001")
    patients.update_patient(first, form(first, puid="EXT-9"), user=staff["admin"], reason="Register id")
    walk_in = images_under(orthanc_row, upload, "P-000002", "CONDORI^ANA")
    settings.save_clinic_settings({"puid_auto": "1", "puid_pattern": "P-######"})
    db.session.commit()
    made = patients.create_patient({"family_name": "Nuevo", "sex": "M"})
    db.session.commit()
    assert made.puid == "P-000003"
    db.session.expire_all()
    assert not same_patient(walk_in, made)


# -- a new PUID that images carry ----------------------------------------------------------

@pytest.fixture
def walk_in(staff, create_patient, orthanc_row, upload):
    """Condori is registered as TMP-1 (no images); a study typed at the
    modality carries WALK-1."""
    p = create_patient(puid="TMP-1", family_name="Condori", given_name="Ana")
    study = images_under(orthanc_row, upload, "WALK-1", "CONDORI^ANA")
    assert not patients.has_studies(p)
    return {"patient": p, "study": study}


def test_staff_cannot_give_a_patient_a_puid_that_images_carry(walk_in, login, staff):
    p = walk_in["patient"]
    r = login("tech").post(f"/patients/{p.id}/edit", form(p, puid="WALK-1"), token_from=f"/patients/{p.id}/edit")
    assert r.status_code == 400
    assert "Images already carry PUID WALK-1: only an administrator can give it to this patient." in page(r)
    db.session.expire_all()
    assert db.session.get(Patient, p.id).puid == "TMP-1"
    with pytest.raises(patients.PatientError) as err:
        patients.update_patient(db.session.get(Patient, p.id), form(p, puid="WALK-1"), user=staff["tech"],
                                reason="typo")
    assert "only an administrator" in err.value.errors["puid"]


def test_an_administrator_gives_it_with_a_reason_and_it_is_recorded(walk_in, login, staff):
    p = walk_in["patient"]
    admin = login("boss")
    r = admin.post(f"/patients/{p.id}/edit", form(p, puid="WALK-1"), token_from=f"/patients/{p.id}/edit")
    assert r.status_code == 400
    body = page(r)
    assert "Say why the PUID changes: images already carry the new one." in body
    assert 'name="puid_reason"' in body
    db.session.expire_all()
    assert db.session.get(Patient, p.id).puid == "TMP-1"
    r = admin.post(f"/patients/{p.id}/edit", form(p, puid="WALK-1", puid_reason="Walk-in study is hers"),
                   token_from=f"/patients/{p.id}/edit")
    assert r.status_code == 302, page(r)[:3000]
    db.session.expire_all()
    assert db.session.get(Patient, p.id).puid == "WALK-1"
    change = db.session.scalars(select(PuidChange)).one()
    assert (change.old_puid, change.new_puid, change.reason, change.changed_by_name) == \
        ("TMP-1", "WALK-1", "Walk-in study is hers", "Ada Admin")


def test_guard_a_new_puid_no_image_carries_stays_free_to_staff(walk_in, login):
    p = walk_in["patient"]
    r = login("tech").post(f"/patients/{p.id}/edit", form(p, puid="TMP-2"), token_from=f"/patients/{p.id}/edit")
    assert r.status_code == 302
    assert db.session.scalars(select(PuidChange)).all() == []


def test_allocation_skips_a_former_puid_whose_images_left_orthanc(staff, create_patient, orthanc_row, upload,
                                                                   orthanc):
    """The study under P-000001 was deleted from Orthanc after the change
    (reconciled away), but prints, CDs and other archives still carry
    P-000001: the record of the change alone keeps it from a new patient."""
    first = create_patient(puid="P-000001", family_name="Quispe", given_name="Rosa")
    study = images_under(orthanc_row, upload, "P-000001")
    patients.update_patient(first, form(first, puid="EXT-9"), user=staff["admin"], reason="Register id")
    db.session.commit()
    orthanc.delete_study(study.orthanc_id)
    assert sync.run(orthanc_row.id, mode="reconcile").studies_deleted == 1
    assert not patients.images_carry("P-000001")
    settings.save_clinic_settings({"puid_auto": "1", "puid_pattern": "P-######"})
    db.session.commit()
    made = patients.create_patient({"family_name": "Nuevo", "sex": "M"})
    db.session.commit()
    assert made.puid == "P-000002"
