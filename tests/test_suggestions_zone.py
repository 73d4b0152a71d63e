"""Link suggestions near midnight with the clinic in America/La_Paz (UTC-4):
the study's StudyDate is the clinic's calendar day, the requests' times are
stored in UTC, and "within a few days" compares the two on the clinic's
calendar. A real Orthanc holds the study; the requests come through the API
in the clinic's wall-clock time, months before today (so their creation
time is far from the study)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, OrthancStudy
from ghimaging.orthanc import suggestions, sync
from ghimaging.settings import service as settings
from tests.support import dicomgen

NEAR = "scheduled within a few days"


@pytest.fixture
def la_paz(app):
    settings.save_clinic_settings({"time_zone": "America/La_Paz"})
    db.session.commit()


def order(doc_api, patient, when: str) -> ImagingRequest:
    r = doc_api.post("/api/v1/requests", json={"patient_id": patient.id, "test_code": "XR-CHEST",
                                                "scheduled_at": when, "submit": True, "confirm_past": True})
    assert r.status_code == 201, r.get_json()
    return db.session.get(ImagingRequest, r.get_json()["id"])


def study_on(orthanc_row, upload, patient_id: str, day: str) -> OrthancStudy:
    ds = dicomgen.make_instance(patient_id, "Somebody^Else", study_date=day, modality="CR")
    upload([ds])
    assert sync.run(orthanc_row.id).error == ""
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.study_uid == str(ds.StudyInstanceUID)))
    assert study is not None and study.study_date == day
    return study


def offered(study: OrthancStudy) -> dict[int, list[str]]:
    return {s.request.id: s.reasons for s in suggestions.suggestions(study, limit=20)}


def test_within_a_few_days_counts_clinic_days_around_midnight(la_paz, api, catalog, create_patient, orthanc_row,
                                                              upload):
    doc = api("physician")
    patient = create_patient()
    # Four clinic days before the study, but already 12 June in UTC.
    early = order(doc, patient, "2025-06-11T22:00")
    # Three clinic days after the study, but already 19 June in UTC.
    late = order(doc, patient, "2025-06-18T21:00")
    assert (early.scheduled_at.day, late.scheduled_at.day) == (12, 19)  # stored UTC
    got = offered(study_on(orthanc_row, upload, patient.puid, "20250615"))
    assert NEAR not in got[early.id]
    assert NEAR in got[late.id]


def test_another_patients_exam_late_on_the_window_s_last_day_is_offered(la_paz, api, catalog, create_patient,
                                                                       orthanc_row, upload):
    """Found by the date window alone (another patient, nothing else alike):
    the window ends at the clinic's midnight, not UTC's."""
    doc = api("physician")
    inside = order(doc, create_patient(), "2025-06-18T21:00")  # 19 June 01:00 UTC
    outside = order(doc, create_patient(), "2025-06-11T22:00")  # 12 June 02:00 UTC
    got = offered(study_on(orthanc_row, upload, "NOT-A-PUID-77", "20250615"))
    assert inside.id in got and NEAR in got[inside.id]
    assert outside.id not in got
