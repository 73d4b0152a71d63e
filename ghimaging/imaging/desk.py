"""What the reporting desk shows around the report editor: the patient's
header (age, sex, alerts), the patient's prior requests with their studies
and reports and the patient's studies that answer no request, the test's report templates, and the drafts kept for this
request. Read-only: the desk's changes go through :mod:`.reporting` and
:mod:`.drafts`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import clock
from ..catalog import report_templates
from ..extensions import db
from ..models import ImagingRequest, OrthancStudy, ReportDraft, ReportTemplate, RequestState, StudyLink, User
from ..orthanc import matching
from . import drafts, progress

#: Prior requests listed on the desk (newest first); older ones are on the patient's page.
PRIORS_MAX = 20


@dataclass
class Prior:
    """One earlier request of the patient, as the desk lists it."""

    req: ImagingRequest
    label: str  # the state people see (:mod:`.progress`), as on every other page


@dataclass
class UnlinkedStudy:
    """A study with the patient's PUID that answers no request, and what
    in it disagrees with the register (empty: nothing does)."""

    study: OrthancStudy
    warnings: list[str]


@dataclass
class Desk:
    req: ImagingRequest
    age: int | None
    alerts: list[str]
    priors: list[Prior]
    templates: list[ReportTemplate]
    draft: ReportDraft | None
    others: list[ReportDraft] = field(default_factory=list)
    studies: list[UnlinkedStudy] = field(default_factory=list)


def priors(req: ImagingRequest, limit: int = PRIORS_MAX) -> list[Prior]:
    """The patient's other requests, newest first, cancelled ones left out
    unless they have images (a cancelled order with images is still history)."""
    rows = db.session.scalars(
        select(ImagingRequest).options(selectinload(ImagingRequest.result))
        .where(ImagingRequest.patient_id == req.patient_id, ImagingRequest.id != req.id)
        .order_by(ImagingRequest.created_at.desc(), ImagingRequest.id.desc()).limit(limit))
    return [Prior(r, progress.of(r).label) for r in rows
            if r.state != RequestState.CANCELLED.value or r.images_available]


def unlinked_studies(req: ImagingRequest, limit: int = PRIORS_MAX) -> list[UnlinkedStudy]:
    """Studies in Orthanc with the patient's PUID that answer no request
    (made elsewhere, or never linked): history too, newest first.

    A PUID alone does not make a study this patient's: the matching trusts
    PatientID only with a name and birth date that agree, and holds the
    others in the Inbox. They are still listed here, not left out: a
    study of this patient typed with a misspelt name is real history the
    radiologist may need, and hiding it would hide the Inbox problem too.
    But each carries what disagrees, in words, from the one identity check
    (:func:`..orthanc.identity.identity_differences`) and the study's own
    warnings (a UID shared with another patient's study), and the desk
    shows it as "check before using", never as a plain prior."""
    from ..orthanc.identity import former_puid_is_only

    patient = req.patient
    # Studies made before an administrator changed the PUID carry the old
    # one: theirs too, while that old PUID has been nobody else's since.
    ids = [patient.puid, *(c.old_puid for c in patient.puid_changes if former_puid_is_only(c.old_puid, patient))]
    linked = select(StudyLink.study_id)
    rows = db.session.scalars(
        select(OrthancStudy).where(OrthancStudy.patient_id.in_(ids), OrthancStudy.id.not_in(linked))
        .order_by(OrthancStudy.study_date.desc(), OrthancStudy.id.desc()).limit(limit))
    return [UnlinkedStudy(st, matching.identity_differences(st, req.patient) + matching.warnings_of(st))
            for st in rows]


def build(req: ImagingRequest, user: User, today: date | None = None) -> Desk:
    patient = req.patient
    return Desk(req=req, age=patient.age_on(today or clock.today()), alerts=patient.alert_lines,
                priors=priors(req), templates=report_templates.of_test(req.test_id),
                draft=drafts.mine(req, user), others=drafts.others(req, user), studies=unlinked_studies(req))
