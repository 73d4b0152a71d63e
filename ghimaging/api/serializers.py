from __future__ import annotations

from typing import Any

from .. import clock
from ..imaging import progress
from ..models import ImagingRequest, ImagingTest, Result
from ..ui import dicom_name


def person_name_fields(key: str, raw: str | None) -> dict[str, str]:
    """A DICOM person name as stored (``key``) and as the pages show it
    (``key_display``, every component group, no ``^`` or ``=``): clients
    that print a name need not parse PN, and nothing is lost for those
    that do."""
    return {key: raw or "", f"{key}_display": dicom_name(raw)}


def test_json(t: ImagingTest) -> dict[str, Any]:
    return {"id": t.id, "code": t.code, "name": t.name, "modality": t.modality.code,
            "ae_title": t.ae_title, "worklist_template": t.worklist_template, "active": t.active}


def result_json(r: Result) -> dict[str, Any]:
    return {
        "id": r.id, "request_id": r.request_id, "date": r.result_date.isoformat(), "report": r.report,
        "report_style": r.report_style, "radiologist": r.radiologist.username if r.radiologist else None,
        "final": r.is_final, "finalised_at": r.finalised_at.isoformat() + "Z" if r.finalised_at else None,
        "images": [{"id": i.id, "caption": i.caption, "content_type": i.content_type} for i in r.images],
        "addenda": [{"text": a.text, "at": a.created_at.isoformat() + "Z",
                     "author": a.author.username if a.author else None} for a in r.addenda],
    }


def request_json(r: ImagingRequest, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id, "order_number": r.order_number, "state": r.state, "progress": progress.of(r).value,
        "accession_number": r.accession_number, "study_instance_uid": r.study_instance_uid,
        "patient_id": r.patient_id, "patient_puid": r.patient.puid, "test_code": r.test.code,
        "test_name": r.test.name, "modality": r.test.modality.code, "urgent": r.urgent,
        "clinical_context": r.clinical_context, "comment": r.comment,
        "scheduled_at": clock.to_local_aware(r.scheduled_at).isoformat(timespec="minutes") if r.scheduled_at else None,
        "requesting_physician": r.requesting_physician.username if r.requesting_physician else None,
        "cancel_reason": r.cancel_reason or None,
        "created_at": r.created_at.isoformat() + "Z",
        "result_id": r.result.id if r.result else None,
    }
    out["images_available"] = r.images_available
    from ..gnuhealth import status as gnuhealth_status

    out["gnuhealth"] = gnuhealth_status.request_json(r)  # null when not linked to GNU Health
    if detail:
        from ..orthanc.matching import studies_of

        out["studies"] = [{"id": link.study_id, "study_instance_uid": link.study.study_uid,
                           "orthanc_id": link.study.orthanc_id, "server": link.study.server.label,
                           "method": link.method, "patient_id": link.study.patient_id,
                           **person_name_fields("patient_name", link.study.patient_name),
                           "other_patient": link.other_patient, "reason": link.reason or None,
                           "identity_warning": link.warning if link.needs_review else None}
                          for link in studies_of(r)]
        out["events"] = [{"at": e.at.isoformat() + "Z", "action": e.action, "from": e.from_state,
                          "to": e.to_state, "user": e.user.username if e.user else None, "note": e.note}
                         for e in r.events]
        out["result"] = result_json(r.result) if r.result else None
    return out
