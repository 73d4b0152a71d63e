"""Studies find their orders.

Run by the sync for every new or changed study, and by staff by hand. The
rules, in order: the study's StudyInstanceUID equals the request's; else
its AccessionNumber equals the request's accession number; else, when
``MATCH_MERGE_ID`` is on, GNU Health's merge-id rule (a UID under our
organisation root naming the request, in another study tag). A pair that
staff unlinked by hand is never linked again automatically. Every link and
unlink is recorded: who, when, how.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, or_, select

from ..extensions import db
from ..models import (ImagingRequest, LinkEvent, OrthancStudy, Patient, RequestState,
                      StudyLink, User)

log = logging.getLogger(__name__)
LINKABLE = (RequestState.REQUESTED.value, RequestState.DONE.value, RequestState.DRAFT.value)
SUGGEST_DAYS = 3


class LinkError(ValueError):
    """A link or unlink that cannot be made; the message is safe to show."""


@dataclass
class Suggestion:
    request: ImagingRequest
    reasons: list[str]
    score: int


def _manually_unlinked(study_uid: str, request_id: int) -> bool:
    last = db.session.scalar(select(LinkEvent).where(LinkEvent.study_uid == study_uid,
                                                     LinkEvent.request_id == request_id)
                             .order_by(LinkEvent.id.desc()).limit(1))
    return last is not None and last.action == "unlink" and last.method == "manual"


def _candidates(study: OrthancStudy) -> list[tuple[ImagingRequest, str]]:
    found: list[tuple[ImagingRequest, str]] = []
    if study.study_uid:
        for req in db.session.scalars(select(ImagingRequest).where(
                ImagingRequest.study_instance_uid == study.study_uid, ImagingRequest.state.in_(LINKABLE))):
            found.append((req, "study_uid"))
    if not found and study.accession_number:
        for req in db.session.scalars(select(ImagingRequest).where(
                ImagingRequest.accession_number == study.accession_number, ImagingRequest.state.in_(LINKABLE))):
            found.append((req, "accession"))
    if not found and current_app.config.get("MATCH_MERGE_ID") and current_app.config.get("ORG_ROOT"):
        root = current_app.config["ORG_ROOT"] + ".9."
        for value in (study.description, study.accession_number):
            if value and value.startswith(root) and value[len(root):].isdigit():
                req = db.session.get(ImagingRequest, int(value[len(root):]))
                if req is not None and req.state in LINKABLE:
                    found.append((req, "merge_id"))
    return found


def match_study(study: OrthancStudy) -> list[StudyLink]:
    """Link ``study`` to the requests the automatic rules find. Idempotent."""
    made = []
    for req, method in _candidates(study):
        if _is_linked(study, req) or _manually_unlinked(study.study_uid, req.id):
            continue
        made.append(_link(study, req, method, None))
    if made:
        db.session.commit()
        for link in made:
            _after_link(link.request)
    return made


def match_generation(server_id: int, generation: int) -> int:
    """The automatic rules for every unlinked study of one full sync, as
    joins: StudyInstanceUID first, then AccessionNumber for the studies the
    first rule left alone. Returns how many links were made."""
    unlinked = ~exists().where(StudyLink.study_id == OrthancStudy.id)
    base = (OrthancStudy.server_id == server_id, OrthancStudy.seen_generation == generation, unlinked,
            ImagingRequest.state.in_(LINKABLE))
    by_uid = db.session.execute(
        select(OrthancStudy.id, ImagingRequest.id)
        .join(ImagingRequest, ImagingRequest.study_instance_uid == OrthancStudy.study_uid)
        .where(*base, OrthancStudy.study_uid != "")).all()
    uid_studies = {s for s, _ in by_uid}
    by_acc = [(s, r) for s, r in db.session.execute(
        select(OrthancStudy.id, ImagingRequest.id)
        .join(ImagingRequest, ImagingRequest.accession_number == OrthancStudy.accession_number)
        .where(*base, OrthancStudy.accession_number != "")).all() if s not in uid_studies]
    made = []
    for pairs, method in ((by_uid, "study_uid"), (by_acc, "accession")):
        for study_id, request_id in pairs:
            study = db.session.get(OrthancStudy, study_id)
            req = db.session.get(ImagingRequest, request_id)
            if study is None or req is None or _is_linked(study, req) \
                    or _manually_unlinked(study.study_uid, req.id):
                continue
            made.append(_link(study, req, method, None))
    if made:
        db.session.commit()
        for link in made:
            _after_link(link.request)
    if current_app.config.get("MATCH_MERGE_ID") and current_app.config.get("ORG_ROOT"):
        root = current_app.config["ORG_ROOT"] + ".9."
        for study in db.session.scalars(select(OrthancStudy).where(
                OrthancStudy.server_id == server_id, OrthancStudy.seen_generation == generation,
                ~exists().where(StudyLink.study_id == OrthancStudy.id),
                or_(OrthancStudy.description.startswith(root, autoescape=True),
                    OrthancStudy.accession_number.startswith(root, autoescape=True)))):
            made.extend(match_study(study))
    return len(made)


def _is_linked(study: OrthancStudy, req: ImagingRequest) -> bool:
    return db.session.scalar(select(exists().where(StudyLink.study_id == study.id,
                                                   StudyLink.request_id == req.id))) or False


def _link(study: OrthancStudy, req: ImagingRequest, method: str, user: User | None) -> StudyLink:
    link = StudyLink(study=study, request=req, method=method, created_by_id=user.id if user else None)
    db.session.add(link)
    req.images_available = True
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid, request_id=req.id,
                             action="link", method=method, user_id=user.id if user else None,
                             note=f"{study.patient_id} {study.accession_number}".strip()))
    return link


def _after_link(req: ImagingRequest) -> None:
    """The modality has done its work: the worklist item goes away."""
    from ..worklists import writer

    try:
        writer.remove(req)
    except Exception:
        log.exception("could not remove the worklist file of %s", req.accession_number)


def link(study: OrthancStudy, req: ImagingRequest, user: User | None) -> StudyLink:
    if req.state not in LINKABLE:
        raise LinkError(f"Request {req.accession_number} is {req.state}; a study cannot be linked to it.")
    if _is_linked(study, req):
        raise LinkError(f"The study is already linked to request {req.accession_number}.")
    made = _link(study, req, "manual", user)
    db.session.commit()
    _after_link(req)
    return made


def unlink(study: OrthancStudy, req: ImagingRequest, user: User | None) -> None:
    row = db.session.scalar(select(StudyLink).where(StudyLink.study_id == study.id, StudyLink.request_id == req.id))
    if row is None:
        raise LinkError(f"The study is not linked to request {req.accession_number}.")
    db.session.delete(row)
    db.session.flush()
    req.images_available = bool(db.session.scalar(select(func.count()).select_from(StudyLink)
                                                   .where(StudyLink.request_id == req.id)))
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid, request_id=req.id,
                             action="unlink", method="manual", user_id=user.id if user else None))
    db.session.commit()
    if not req.images_available:
        from ..worklists import writer

        if writer.is_live(req):
            writer.write(req)  # offered to the modality again


def forget_studies(study_ids: list[int]) -> list[ImagingRequest]:
    """Studies gone from Orthanc: drop their links, record it, and put
    requests left without images back as they were. Returns the requests
    that lost their last study; call :func:`reoffer` after committing."""
    links = list(db.session.scalars(select(StudyLink).where(StudyLink.study_id.in_(study_ids))))
    affected = {l.request_id: l.request for l in links}
    for l in links:
        db.session.add(LinkEvent(server_id=l.study.server_id, study_uid=l.study.study_uid, request_id=l.request_id,
                                 action="delete", method="orthanc", note="study no longer in Orthanc"))
        db.session.delete(l)
    db.session.flush()
    bare = []
    for req_id, req in affected.items():
        req.images_available = bool(db.session.scalar(select(func.count()).select_from(StudyLink)
                                                       .where(StudyLink.request_id == req_id)))
        if not req.images_available:
            bare.append(req)
    return bare


def reoffer(requests: list[ImagingRequest]) -> None:
    """Requests whose images are gone go back on the worklist if still requested."""
    from ..worklists import writer

    for req in requests:
        try:
            if writer.is_live(req):
                writer.write(req)
        except Exception:
            log.exception("could not rewrite the worklist file of %s", req.accession_number)


def studies_of(req: ImagingRequest) -> list[StudyLink]:
    return list(db.session.scalars(select(StudyLink).where(StudyLink.request_id == req.id)
                                   .order_by(StudyLink.id)))


def requests_of(study: OrthancStudy) -> list[StudyLink]:
    return list(db.session.scalars(select(StudyLink).where(StudyLink.study_id == study.id)
                                   .order_by(StudyLink.id)))


def patient_conflict(study: OrthancStudy) -> str:
    """A warning when one study is linked to requests of different patients."""
    patients = {l.request.patient_id for l in requests_of(study)}
    if len(patients) > 1:
        return "This study is linked to requests of different patients. Check the links."
    return ""


def unmatched():
    """Studies linked to no request, newest first (a select for paging)."""
    return (select(OrthancStudy).where(~exists().where(StudyLink.study_id == OrthancStudy.id))
            .order_by(OrthancStudy.study_date.desc(), OrthancStudy.id.desc()))


def _study_day(study: OrthancStudy) -> date | None:
    try:
        return datetime.strptime(study.study_date, "%Y%m%d").date()
    except (TypeError, ValueError):
        return None


def suggestions(study: OrthancStudy, limit: int = 5) -> list[Suggestion]:
    """Requests this study probably belongs to, with the reasons why."""
    local_id = study.patient_row.local_patient_id if study.patient_row else None
    who = [Patient.puid == study.patient_id] if study.patient_id else []
    if local_id:
        who.append(Patient.id == local_id)
    day = _study_day(study)
    mods = set(study.modality_list)
    stmt = select(ImagingRequest).join(ImagingRequest.patient).where(ImagingRequest.state.in_(LINKABLE))
    conds = list(who)
    if day:
        start = datetime.combine(day - timedelta(days=SUGGEST_DAYS), datetime.min.time())
        end = datetime.combine(day + timedelta(days=SUGGEST_DAYS + 1), datetime.min.time())
        conds.append(or_(and_(ImagingRequest.scheduled_at >= start, ImagingRequest.scheduled_at < end),
                         and_(ImagingRequest.created_at >= start, ImagingRequest.created_at < end)))
    if not conds:
        return []
    out = []
    for req in db.session.scalars(stmt.where(or_(*conds)).order_by(ImagingRequest.id.desc()).limit(50)):
        reasons, score = [], 0
        if req.patient.puid == study.patient_id:
            reasons.append("same PatientID")
            score += 3
        elif local_id and req.patient_id == local_id:
            reasons.append("linked patient")
            score += 3
        if req.test.modality.code in mods:
            reasons.append(f"same modality ({req.test.modality.code})")
            score += 2
        when = (req.scheduled_at or req.created_at)
        if day and when and abs((when.date() - day).days) <= SUGGEST_DAYS:
            reasons.append("scheduled within a few days" if req.scheduled_at else "ordered within a few days")
            score += 1
        if req.state == RequestState.REQUESTED.value:
            score += 1
        same_patient = bool(reasons) and reasons[0] in ("same PatientID", "linked patient")
        if not same_patient and req.images_available:
            continue  # another patient's request that already has its images
        if score >= 3 and not _is_linked(study, req):
            out.append(Suggestion(req, reasons, score))
    out.sort(key=lambda s: (-s.score, -s.request.id))
    return out[:limit]


def history(study_uid: str) -> list[LinkEvent]:
    return list(db.session.scalars(select(LinkEvent).where(LinkEvent.study_uid == study_uid)
                                   .order_by(LinkEvent.id)))


def _on_study_synced(sender, study: OrthancStudy, created: bool, **_) -> None:
    try:
        match_study(study)
    except Exception:  # matching must never stop the sync
        db.session.rollback()
        log.exception("matching study %s failed", study.study_uid)


def connect() -> None:
    from .sync import study_synced

    study_synced.connect(_on_study_synced)
