"""Studies find their orders, and never another patient's.

This module is the entry to the rules that join images, orders and
patients; each rule lives in one module by job: who a study is of
(:mod:`.identity`), the automatic rule (:mod:`.rules`), making and undoing
links (:mod:`.linking`) and the Inbox's suggestions (:mod:`.suggestions`).
The sync runner, the Inbox, the API and the upload "for request" link all
come through :func:`assess`, :func:`link` and :func:`match_study`; this
module adds the read side (links of a study or request, warnings, history).

The automatic rule: a study is linked to a request when its
StudyInstanceUID or its AccessionNumber names that request **and** its
PatientID equals the PUID of the request's patient (after DICOM trimming
of leading and trailing spaces; nothing else is forgiven). When names or
birth dates then disagree the link is made but carries a warning until
someone confirms it. Everything else waits in the Inbox with its reasons
in words: a PatientID that differs (even only by case, leading zeros or
spaces), a UID shared by studies of two patients, a UID and an accession
naming two different requests, an accession naming several requests, a
request that is a draft or cancelled, a pair that staff unlinked by hand.

A person may link by hand; to a request of another patient only with an
explicit confirmation and a reason, recorded on the link, in the study's
history and in the request's history for good.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import Select, exists, select

from ..extensions import db
from ..models import ImagingRequest, LinkEvent, OrthancStudy, StudyLink
from .identity import (
    dicom_id,
    identity_differences,
    name_matches,
    near_id_reason,
    patient_identity,
    same_patient,
    study_identity,
)
from .linking import (
    LinkError,
    OtherPatientError,
    confirm,
    flag_shared,
    forget_studies,
    link,
    match_generation,
    match_study,
    reoffer,
    unlink,
)
from .rules import LINKABLE, Assessment, assess, uid_partners
from .suggestions import SUGGEST_DAYS, Suggestion, suggestions

__all__ = [
    "LINKABLE", "SUGGEST_DAYS", "Assessment", "LinkError", "OtherPatientError", "Suggestion", "assess", "confirm",
    "dicom_id", "flag_shared", "forget_studies", "history", "identity_differences", "inbox_notes", "link",
    "link_warning",
    "match_generation", "match_study", "name_matches", "near_id_reason", "patient_conflict", "patient_identity",
    "reoffer", "requests_of", "same_patient", "studies_of", "study_identity", "suggestions", "to_review", "unlink",
    "unmatched", "warnings_of",
]


def studies_of(req: ImagingRequest) -> list[StudyLink]:
    return list(db.session.scalars(select(StudyLink).where(StudyLink.request_id == req.id)
                                   .order_by(StudyLink.id)))


def requests_of(study: OrthancStudy) -> list[StudyLink]:
    return list(db.session.scalars(select(StudyLink).where(StudyLink.study_id == study.id)
                                   .order_by(StudyLink.id)))


def warnings_of(study: OrthancStudy) -> list[str]:
    """Everything a person must know before trusting this study's links."""
    out = []
    if study.uid_shared:
        out.append(_("This StudyInstanceUID is shared by studies of two patients (PatientIDs %(ids)s).",
                     ids=", ".join([dicom_id(study.patient_id), *uid_partners(study)])))
    links = requests_of(study)
    if len({lk.request.patient_id for lk in links}) > 1:
        out.append(_("This study is linked to requests of different patients. Check the links."))
    for lk in links:
        if lk.other_patient:
            out.append(_("Linked by hand to request %(accession)s of another patient (%(name)s). Reason: %(reason)s",
                         accession=lk.request.accession_number, name=lk.request.patient.full_name, reason=lk.reason))
        elif lk.needs_review:
            out.append(_("Request %(accession)s: %(warning)s", accession=lk.request.accession_number,
                         warning=link_warning(lk)))
    return out


def link_warning(link: StudyLink) -> str:
    """What a link to check says, in the reader's language: the identity
    differences as they are now (the check that stored ``link.warning``
    when the link was made, in the language of whoever or whatever made it:
    often the sync, in the clinic's), else the stored text when register
    and study no longer differ (the link still waits for a person)."""
    now = " ".join(identity_differences(link.study, link.request.patient)) if link.warning else ""
    return now or link.warning


def patient_conflict(study: OrthancStudy) -> str:
    """A warning when one study is linked to requests of different patients."""
    patients = {lk.request.patient_id for lk in requests_of(study)}
    if len(patients) > 1:
        return str(_("This study is linked to requests of different patients. Check the links."))
    return ""


def unmatched() -> Select[OrthancStudy]:
    """Studies linked to no request, newest first (a select for paging)."""
    return (select(OrthancStudy).where(~exists().where(StudyLink.study_id == OrthancStudy.id))
            .order_by(OrthancStudy.study_date.desc(), OrthancStudy.id.desc()))


def to_review() -> Select[StudyLink]:
    """Links whose identity differed (name, birth date, a shared UID, a
    PatientID that is not the PUID), not yet confirmed by a person (a
    select, newest first). Links to another patient's request made with a
    confirmation and a reason are not listed: a person checked them, and
    they stay red on their request."""
    return (select(StudyLink).where(StudyLink.warning != "", StudyLink.confirmed_at.is_(None))
            .order_by(StudyLink.id.desc()))


def history(study: OrthancStudy | str) -> list[LinkEvent]:
    """Links, unlinks, confirmations and deletions of a study, kept by UID
    (and PatientID: one UID may come under two) so they outlive its row."""
    if isinstance(study, str):
        return list(db.session.scalars(select(LinkEvent).where(LinkEvent.study_uid == study).order_by(LinkEvent.id)))
    return list(db.session.scalars(select(LinkEvent).where(
        LinkEvent.study_uid == study.study_uid,
        LinkEvent.patient_id.in_((dicom_id(study.patient_id)[:64], ""))).order_by(LinkEvent.id)))


def inbox_notes(studies: Iterable[OrthancStudy]) -> tuple[dict[int, list[Suggestion]], dict[int, list[str]]]:
    """For each study of an Inbox page: the requests it probably belongs to,
    and why nothing was linked automatically."""
    suggested, reasons = {}, {}
    for study in studies:
        suggested[study.id] = suggestions(study, limit=4)
        reasons[study.id] = assess(study).reasons
    return suggested, reasons
