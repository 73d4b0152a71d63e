"""Requests a study that found none probably belongs to, for the Inbox: the
same patient's first; everything else needs a confirmation and a reason to
link (see :func:`.linking.link`)."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import and_, func, or_, select

from .. import clock
from ..extensions import db
from ..models import ImagingRequest, OrthancStudy, Patient, RequestState
from ..models.patients import fold
from .identity import dicom_date, dicom_id, near_id_reason, same_patient
from .rules import LINKABLE, is_linked, named

SUGGEST_DAYS = 3


@dataclass
class Suggestion:
    request: ImagingRequest
    reasons: list[str]
    score: int
    same_patient: bool  # linking needs no confirmation


def _study_day(study: OrthancStudy) -> date | None:
    """The study's date, or None when it is missing, malformed or too near
    the ends of the calendar to look days around it (00010101, 99991231)."""
    try:
        day = datetime.strptime(study.study_date, "%Y%m%d").date()
    except (TypeError, ValueError):
        return None
    margin = timedelta(days=SUGGEST_DAYS + 1)
    return day if date.min + margin < day < date.max - margin else None


def _surname_words(study: OrthancStudy) -> list[str]:
    words = []
    for group in (study.patient_name or "").split("="):
        fam = group.split("^")[0]
        words += [w for w in fold(fam).replace("-", " ").split() if len(w) > 1]
    return words[:4]


def suggestions(study: OrthancStudy, limit: int = 5) -> list[Suggestion]:
    """Requests this study probably belongs to, the same patient's first.

    The same patient: the PatientID is the PUID. Likely the same: a
    PatientID that differs only by case, leading zeros or spaces, the same
    birth date and family name, or an Orthanc patient linked to them by
    hand. Other patients' requests (same modality, near the study's date)
    come last. Everything but the same patient needs a confirmation and a
    reason to link."""
    pid = dicom_id(study.patient_id)
    row = study.patient_row
    manual_local = row.local_patient_id if row and row.link_mode == "manual" else None
    who = []
    if pid:
        who.append(Patient.puid == pid)
        squeezed = pid.replace(" ", "").lstrip("0").lower()
        if squeezed:
            who.append(func.ltrim(func.lower(func.replace(Patient.puid, " ", "")), "0") == squeezed)
    if manual_local:
        who.append(Patient.id == manual_local)
    birth = study.birth_date if len(study.birth_date or "") == 8 and study.birth_date.isdigit() else ""
    if birth:
        with suppress(ValueError):
            who.append(Patient.birth_date == datetime.strptime(birth, "%Y%m%d").date())
    by_rule = named(study)[2]
    if by_rule:
        who.append(ImagingRequest.id.in_(list(by_rule)))
    day = _study_day(study)
    conds = list(who)
    if day:
        # The study's day is the clinic's calendar day (what the modality's
        # clock said); scheduled_at and created_at are stored UTC.
        start = clock.day_bounds(day - timedelta(days=SUGGEST_DAYS))[0]
        end = clock.day_bounds(day + timedelta(days=SUGGEST_DAYS))[1]
        conds.append(or_(and_(ImagingRequest.scheduled_at >= start, ImagingRequest.scheduled_at < end),
                         and_(ImagingRequest.created_at >= start, ImagingRequest.created_at < end)))
    if not conds:
        return []
    stmt = (select(ImagingRequest).join(ImagingRequest.patient)
            .where(ImagingRequest.state.in_(LINKABLE), or_(*conds)).order_by(ImagingRequest.id.desc()).limit(100))
    mods = set(study.modality_list)
    surnames = set(_surname_words(study))
    out = []
    for req in db.session.scalars(stmt):
        if is_linked(study, req):
            continue
        p = req.patient
        reasons, score = [], 0
        same = same_patient(study, p)
        if same:
            reasons.append(_("same patient (PatientID = PUID)"))
            score += 10
        else:
            if manual_local == p.id:
                reasons.append(_("Orthanc patient linked to this patient by hand"))
                score += 6
            near = near_id_reason(study.patient_id, p.puid)
            if near:
                reasons.append(_("PatientID differs from the PUID only by %(difference)s", difference=near))
                score += 6
            if birth and dicom_date(p.birth_date) == birth and surnames & set(
                    w for w in fold(p.family_name).replace("-", " ").split()):
                reasons.append(_("same birth date and family name"))
                score += 6
        if req.id in by_rule:
            reasons.append({"study_uid": _("its StudyInstanceUID names this request"),
                            "accession": _("its AccessionNumber names this request"),
                            "merge_id": _("its merge id names this request")}[by_rule[req.id]])
            score += 6
        if req.test.modality.code in mods:
            reasons.append(_("same modality (%(modality)s)", modality=req.test.modality.code))
            score += 2
        when = req.scheduled_at or req.created_at
        if day and when and abs((clock.local_date(when) - day).days) <= SUGGEST_DAYS:
            reasons.append(_("scheduled within a few days") if req.scheduled_at else _("ordered within a few days"))
            score += 1
        if req.state == RequestState.REQUESTED.value:
            score += 1
        if score < 6 and (req.images_available or score < 3):
            # Another patient with nothing but a modality and a date: offer it
            # only while it still waits for its images.
            continue
        if not same:
            reasons.append(_("another patient: linking needs a confirmation and a reason"))
        out.append(Suggestion(req, reasons, score, same))
    out.sort(key=lambda s: (not s.same_patient, -s.score, -s.request.id))
    return out[:limit]
