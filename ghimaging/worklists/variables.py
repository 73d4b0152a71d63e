"""The variables a worklist template sees for one request."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import current_app

from .. import clock
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
    # RequestedProcedureCodeSequence / ScheduledProtocolCodeSequence items:
    # the test's code (SH up to 16 characters, else LongCodeValue, UC), in
    # ghimaging's local coding scheme, meaning the test's name.
    "ProcedureCode": "UC", "CodingSchemeDesignator": "SH", "ProcedureCodeMeaning": "LO",
}

#: A private coding scheme designator ("99" + letters, PS3.16 8.2) for the
#: codes of the clinic's own catalogue of tests.
CODING_SCHEME = "99GHIMG"


def scheduled_wall_time(req: ImagingRequest) -> datetime:
    """The scheduled time, or the time it was ordered, on the clinic's wall
    clock (both are stored as UTC): what the modality shows and matches."""
    return clock.to_local(req.scheduled_at or req.created_at)


def merge_id(req: ImagingRequest) -> str:
    """GNU Health's merge id: a UID under the organisation root naming the
    request, for modalities that keep a UID in another tag. Without a root,
    the request's StudyInstanceUID plays the part."""
    root = current_app.config["ORG_ROOT"]
    return f"{root}.9.{req.id}" if root else req.study_instance_uid


def build(req: ImagingRequest, template: WorklistTemplate, clinic_name: str = "",
          charset: str | None = None) -> dict[str, Any]:
    return build_checked(req, template, clinic_name, charset)[0]


def build_checked(req: ImagingRequest, template: WorklistTemplate, clinic_name: str = "",
                  charset: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The variables, and a sentence for each value cut to its VR's length
    (a modality would show the shortened text as if it were the whole).
    ``charset`` replaces the template's SpecificCharacterSet (the UTF-8
    fallback)."""
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
        "TimezoneOffsetFromUTC": clock.utc_offset(req.scheduled_at or req.created_at),
        "ScheduledStationAETitle": req.test.ae_title,
        "Modality": req.test.modality.code,
        "ScheduledProcedureStepID": req.accession_number,
        "SpecificCharacterSet": charset or template.charset,
        "MergeID": merge_id(req),
        "ProcedureCode": req.test.code,
        "CodingSchemeDesignator": CODING_SCHEME,
        "ProcedureCodeMeaning": req.test.name,
    }
    out: dict[str, Any] = {name: v.clean(value, VARIABLES[name]) for name, value in raw.items()}
    whole = {name: v.clean(value, VARIABLES[name], cut=False) for name, value in raw.items()}
    # Names are built from cleaned parts so that no part adds a component.
    out["PatientName"] = v.person_name(patient.family_name, patient.given_name)
    whole["PatientName"] = v.person_name(patient.family_name, patient.given_name, cut=False)
    out["RequestingPhysician"] = v.person_name_from_full(physician)
    whole["RequestingPhysician"] = v.person_name_from_full(physician, cut=False)
    out["ReferringPhysicianName"] = out["RequestingPhysician"]
    whole["ReferringPhysicianName"] = whole["RequestingPhysician"]
    out["SpecificCharacterSet"] = charset or template.charset  # may contain a backslash for multi-valued terms
    # Only what the template writes: a cut value it never uses harms nobody.
    used = set(re.findall(r"\b(\w+)\b", template.body or ""))
    warnings = [f"{name} is cut to {v.MAX_LEN[VARIABLES[name]]} characters ({VARIABLES[name]}): "
                f"the modality shows \u201c{out[name]}\u201d, not \u201c{whole[name]}\u201d."
                for name in VARIABLES if name in used and name in whole and whole[name] != out[name]
                and name != "SpecificCharacterSet"]
    out["my"] = v.SafeProxy(req)
    return out, warnings


def sample_names() -> list[str]:
    return [*VARIABLES, "my"]
