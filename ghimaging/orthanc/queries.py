"""Read-side queries for the Orthanc mirror pages and the API."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Select, and_, func, or_, select

from ..extensions import db
from ..models import ImagingRequest, OrthancPatient, OrthancStudy
from ..models.patients import fold
from ..querytools import contains
from ..ui import dicom_name


def study_list(*, q: str = "", server_id: int | None = None, modality: str = "",
               date_from: date | None = None, date_to: date | None = None) -> Select[OrthancStudy]:
    stmt = select(OrthancStudy)
    if server_id:
        stmt = stmt.where(OrthancStudy.server_id == server_id)
    q = (q or "").strip()[:200]
    if q:
        words = _name_words(q)
        stmt = stmt.where(or_(OrthancStudy.patient_id == q, OrthancStudy.accession_number == q,
                              OrthancStudy.study_uid == q,
                              and_(*[contains(OrthancStudy.name_key, w) for w in words]),
                              contains(func.lower(OrthancStudy.description), q.lower())))
    if modality:
        # Whole codes in the backslash-separated list: "R" must not match CR or MR.
        m = modality.strip().upper()
        stmt = stmt.where(or_(OrthancStudy.modalities == m, OrthancStudy.modalities.startswith(m + "\\", autoescape=True),
                              OrthancStudy.modalities.endswith("\\" + m, autoescape=True),
                              OrthancStudy.modalities.contains("\\" + m + "\\", autoescape=True)))
    if date_from:
        stmt = stmt.where(OrthancStudy.study_date >= _da(date_from))
    if date_to:
        stmt = stmt.where(OrthancStudy.study_date <= _da(date_to), OrthancStudy.study_date != "")
    return stmt.order_by(OrthancStudy.study_date.desc(), OrthancStudy.id.desc())


def _da(d: date) -> str:
    """DICOM DA; strftime gives '999' for the year 999 on some platforms."""
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def _name_words(q: str) -> list[str]:
    """Words of a name as people type it ("Mueller, Anna", "anna mueller",
    "ÄNEAS"), folded like the rows' ``name_key`` (case and accents), to
    find the DICOM form MUELLER^ANNA in any PN group."""
    folded = fold(q).replace(",", " ").replace("^", " ").replace("=", " ")
    return ([w for w in folded.split() if w] or [fold(q)])[:10]


def patient_list(*, q: str = "", server_id: int | None = None) -> Select[OrthancPatient]:
    stmt = select(OrthancPatient)
    if server_id:
        stmt = stmt.where(OrthancPatient.server_id == server_id)
    q = (q or "").strip()
    if q:
        stmt = stmt.where(or_(OrthancPatient.patient_id == q,
                              and_(*[contains(OrthancPatient.name_key, w) for w in _name_words(q)])))
    return stmt.order_by(OrthancPatient.name, OrthancPatient.id)


def study_json(s: OrthancStudy) -> dict[str, object]:
    return {
        "id": s.id, "server": s.server.label, "server_id": s.server_id, "orthanc_id": s.orthanc_id,
        "study_instance_uid": s.study_uid, "accession_number": s.accession_number,
        "patient_id": s.patient_id, "patient_name": s.patient_name,
        "patient_name_display": dicom_name(s.patient_name), "study_date": s.study_date,
        "study_time": s.study_time, "description": s.description, "modalities": s.modality_list,
        "institution": s.institution, "referring_physician": s.referring_physician,
        "series_count": s.series_count, "instance_count": s.instance_count, "stable": s.stable,
        "local_patient_id": s.patient_row.local_patient_id if s.patient_row else None,
        "patient_birth_date": s.birth_date, "uid_shared": s.uid_shared,
    }


def request_by_number(request_id: int | None, accession: str) -> ImagingRequest | None:
    """The request a person named on a form: by id, else by accession number."""
    if request_id:
        return db.session.get(ImagingRequest, request_id)
    accession = accession.strip().upper()
    if accession:
        return db.session.scalar(select(ImagingRequest).where(ImagingRequest.accession_number == accession))
    return None
