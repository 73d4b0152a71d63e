"""The variables a worklist template sees for one request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app

from ..models import ImagingRequest, WorklistTemplate
from . import values as v

# Name -> VR, documented on the template page and used by clean().
VARIABLES: dict[str, str] = {
    "AccessionNumber": "SH", "RequestedProcedureID": "SH", "StudyInstanceUID": "UI",
    "PatientName": "PN", "PatientID": "LO", "PatientAge": "AS", "PatientBirthDate": "DA",
    "PatientSex": "CS", "RequestingPhysician": "PN", "RequestingService": "LO",
    "ReferringPhysicianName": "PN", "InstitutionName": "LO", "RequestedProcedureDescription": "LO",
    "ScheduledProcedureStepStartDate": "DA", "ScheduledProcedureStepStartTime": "TM",
    "TimezoneOffsetFromUTC": "SH", "ScheduledStationAETitle": "AE", "Modality": "CS",
    "ScheduledProcedureStepID": "SH", "SpecificCharacterSet": "CS", "MergeID": "UI",
}


def scheduled_wall_time(req: ImagingRequest) -> datetime:
    """The scheduled time, or the time it was ordered (local wall clock)."""
    if req.scheduled_at:
        return req.scheduled_at
    from datetime import UTC

    return req.created_at.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)


def merge_id(req: ImagingRequest) -> str:
    """GNU Health's merge id: a UID under the organisation root naming the
    request, for modalities that keep a UID in another tag. Without a root,
    the request's StudyInstanceUID plays the part."""
    root = current_app.config["ORG_ROOT"]
    return f"{root}.9.{req.id}" if root else req.study_instance_uid


def build(req: ImagingRequest, template: WorklistTemplate, clinic_name: str = "") -> dict[str, Any]:
    when = scheduled_wall_time(req)
    patient = req.patient
    physician = req.requesting_physician.display_name if req.requesting_physician else ""
    raw: dict[str, Any] = {
        "AccessionNumber": req.accession_number,
        "RequestedProcedureID": req.accession_number,
        "StudyInstanceUID": req.study_instance_uid,
        "PatientID": patient.puid,
        "PatientAge": v.age(patient.birth_date, when.date()),
        "PatientBirthDate": v.da(patient.birth_date),
        "PatientSex": patient.sex,
        "RequestingService": clinic_name,
        "InstitutionName": clinic_name,
        "RequestedProcedureDescription": req.test.name,
        "ScheduledProcedureStepStartDate": v.da(when),
        "ScheduledProcedureStepStartTime": v.tm(when),
        "TimezoneOffsetFromUTC": v.utc_offset(when),
        "ScheduledStationAETitle": req.test.ae_title,
        "Modality": req.test.modality.code,
        "ScheduledProcedureStepID": req.accession_number,
        "SpecificCharacterSet": template.charset,
        "MergeID": merge_id(req),
    }
    out = {name: v.clean(value, VARIABLES[name]) for name, value in raw.items()}
    # Names are built from cleaned parts so that no part adds a component.
    out["PatientName"] = v.person_name(patient.family_name, patient.given_name)
    out["RequestingPhysician"] = v.person_name_from_full(physician)
    out["ReferringPhysicianName"] = out["RequestingPhysician"]
    out["SpecificCharacterSet"] = template.charset  # may contain a backslash for multi-valued terms
    out["my"] = v.SafeProxy(req)
    return out


def sample_names() -> list[str]:
    return list(VARIABLES) + ["my"]
