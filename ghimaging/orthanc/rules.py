"""The automatic rule: which requests a study names, and whether it may be
linked to them without a person (see :mod:`.matching` for the rule in words).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import exists, or_, select

from ..extensions import db
from ..models import ImagingRequest, LinkEvent, OrthancStudy, RequestState, StudyLink
from .identity import (
    dicom_id,
    identity_differences,
    near_id_reason,
    patient_identity,
    same_patient,
    study_identity,
)

# Requests a study may be linked to, automatically or by hand.
LINKABLE = (RequestState.REQUESTED.value, RequestState.DONE.value)


def is_linked(study: OrthancStudy, req: ImagingRequest) -> bool:
    return db.session.scalar(select(exists().where(StudyLink.study_id == study.id,
                                                   StudyLink.request_id == req.id))) or False


@dataclass
class Assessment:
    """What the rules make of one study: the links to make (request, rule,
    warning) and, when nothing is linked, why, in sentences for staff."""

    links: list[tuple[ImagingRequest, str, str]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    candidates: list[ImagingRequest] = field(default_factory=list)


def _merge_id_requests(study: OrthancStudy) -> list[ImagingRequest]:
    if not (current_app.config.get("MATCH_MERGE_ID") and current_app.config.get("ORG_ROOT")):
        return []
    root = current_app.config["ORG_ROOT"] + ".9."
    found = []
    for value in (study.description, study.accession_number):
        if value and value.startswith(root) and value[len(root):].isdigit() and len(value) - len(root) < 10:
            req = db.session.get(ImagingRequest, int(value[len(root):]))
            if req is not None and req not in found:
                found.append(req)
    return found


def _manually_unlinked(study: OrthancStudy, request_id: int) -> bool:
    last = db.session.scalar(select(LinkEvent).where(
        LinkEvent.study_uid == study.study_uid, LinkEvent.request_id == request_id,
        LinkEvent.patient_id.in_((dicom_id(study.patient_id), "")),
        LinkEvent.action.in_(("link", "unlink"))).order_by(LinkEvent.id.desc()).limit(1))
    return last is not None and last.action == "unlink" and last.method == "manual"


def uid_partners(study: OrthancStudy) -> list[str]:
    """PatientIDs of other studies (any server) with this StudyInstanceUID."""
    return sorted(set(db.session.scalars(select(OrthancStudy.patient_id).where(
        OrthancStudy.study_uid == study.study_uid, OrthancStudy.id != study.id,
        OrthancStudy.patient_id != study.patient_id))))


def named(study: OrthancStudy) -> tuple[list[ImagingRequest], list[ImagingRequest], dict[int, str]]:
    """The requests the study's numbers name: by StudyInstanceUID, by
    AccessionNumber, and every one with the rule that named it first."""
    by_uid = list(db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.study_instance_uid == study.study_uid))) if study.study_uid else []
    acc = dicom_id(study.accession_number)
    by_acc = list(db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.accession_number == acc))) if acc else []
    methods: dict[int, str] = {}
    for reqs, method in ((by_uid, "study_uid"), (by_acc, "accession"), (_merge_id_requests(study), "merge_id")):
        for req in reqs:
            methods.setdefault(req.id, method)
    return by_uid, by_acc, methods


def assess(study: OrthancStudy) -> Assessment:
    """Apply the automatic rule to one study (see the module docstring)."""
    out = Assessment()
    by_uid, by_acc, methods = named(study)
    acc = dicom_id(study.accession_number)
    seen: set[int] = set()
    for req in by_uid + by_acc + _merge_id_requests(study):
        if req.id not in seen:
            seen.add(req.id)
            out.candidates.append(req)
    if not out.candidates:
        out.reasons.append(_("No request carries this study's StudyInstanceUID or AccessionNumber."))
        return out
    if study.uid_shared:
        partners = ", ".join(f"\u201c{p}\u201d" for p in uid_partners(study))
        out.reasons.append(_("Its StudyInstanceUID is shared by studies of two patients (PatientID "
                             "\u201c%(patient_id)s\u201d and %(partners)s): only a person can tell which one "
                             "belongs to the order.", patient_id=dicom_id(study.patient_id), partners=partners)
                           if partners else
                           _("Its StudyInstanceUID is shared by studies of two patients (PatientID "
                             "\u201c%(patient_id)s\u201d and another): only a person can tell which one "
                             "belongs to the order.", patient_id=dicom_id(study.patient_id)))
    if by_uid and by_acc and {r.id for r in by_uid} != {r.id for r in by_acc}:
        out.reasons.append(_("Its StudyInstanceUID names request %(by_uid)s but its AccessionNumber names "
                             "request %(by_acc)s.", by_uid=by_uid[0].accession_number,
                             by_acc=by_acc[0].accession_number))
    if len(by_acc) > 1:
        out.reasons.append(_("Its AccessionNumber %(accession)s matches %(count)d requests.", accession=acc,
                             count=len(by_acc)))
    if out.reasons:
        return out
    for req in out.candidates:
        if req.state == RequestState.DRAFT.value:
            out.reasons.append(_("Request %(accession)s is still a draft: submit it, then link the study.",
                                 accession=req.accession_number))
            continue
        if req.state not in LINKABLE:
            out.reasons.append(_("Request %(accession)s is cancelled.", accession=req.accession_number)
                               if req.state == RequestState.CANCELLED.value else
                               _("Request %(accession)s is in the state \u201c%(state)s\u201d.",
                                 accession=req.accession_number, state=req.state_enum.word))
            continue
        if is_linked(study, req):
            continue
        if _manually_unlinked(study, req.id):
            out.reasons.append(_("Staff unlinked this study from request %(accession)s; it is not linked again "
                                 "automatically.", accession=req.accession_number))
            continue
        if not same_patient(study, req.patient):
            near = near_id_reason(study.patient_id, req.patient.puid)
            lead = (_("Its PatientID differs from the PUID of request %(accession)s's patient only by %(how)s: "
                      "it may be the same patient, but the ids must agree before a link is made.",
                      accession=req.accession_number, how=near)
                    if near else
                    _("It names request %(accession)s, but it is of another patient.",
                      accession=req.accession_number))
            out.reasons.append(_("%(reason)s Study: %(study)s. Request: %(patient)s.", reason=lead,
                                 study=study_identity(study), patient=patient_identity(req.patient)))
            continue
        out.links.append((req, methods[req.id], " ".join(identity_differences(study, req.patient))))
    return out


def generation_candidates(server_id: int, generation: int) -> list[int]:
    """The unlinked studies of one full sync that any request names, found
    with joins (one query per key, not one per study)."""
    unlinked = ~exists().where(StudyLink.study_id == OrthancStudy.id)
    base = (OrthancStudy.server_id == server_id, OrthancStudy.seen_generation == generation, unlinked)
    ids = set(db.session.scalars(select(OrthancStudy.id).join(
        ImagingRequest, ImagingRequest.study_instance_uid == OrthancStudy.study_uid)
        .where(*base, OrthancStudy.study_uid != "")))
    ids |= set(db.session.scalars(select(OrthancStudy.id).join(
        ImagingRequest, ImagingRequest.accession_number == OrthancStudy.accession_number)
        .where(*base, OrthancStudy.accession_number != "")))
    if current_app.config.get("MATCH_MERGE_ID") and current_app.config.get("ORG_ROOT"):
        root = current_app.config["ORG_ROOT"] + ".9."
        ids |= set(db.session.scalars(select(OrthancStudy.id).where(
            *base, or_(OrthancStudy.description.startswith(root, autoescape=True),
                       OrthancStudy.accession_number.startswith(root, autoescape=True)))))
    return sorted(ids)
