"""Linking studies to requests: the automatic links the rule allows, links
and unlinks by hand, confirmations, and the links of studies that left
Orthanc. Every change is recorded (``LinkEvent``, and ``RequestEvent`` for a
link across patients). Nothing here commits: the view, the API or the sync
runner that called it does.
"""

from __future__ import annotations

import logging

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import func, select

from ..exceptions import Conflict
from ..extensions import db
from ..models import ImagingRequest, LinkEvent, OrthancStudy, RequestEvent, StudyLink, User
from ..models._time import utcnow
from .identity import dicom_id, identity_differences, patient_identity, same_patient, study_identity
from .rules import LINKABLE, assess, generation_candidates, is_linked

log = logging.getLogger(__name__)


class LinkError(Conflict):
    """A link or unlink that cannot be made; the message is safe to show."""


class OtherPatientError(LinkError):
    """The study is not of the request's patient: linking needs an explicit
    confirmation and a reason."""

    code = "other_patient"


def match_study(study: OrthancStudy) -> list[StudyLink]:
    """Make the links :func:`~.rules.assess` allows. Idempotent."""
    made = [_link(study, req, method, None, warning=warning) for req, method, warning in assess(study).links]
    if made:
        db.session.flush()
        for row in made:
            _after_link(row.request)
    return made


def match_generation(server_id: int, generation: int) -> int:
    """The automatic rule for every unlinked study of one full sync: the
    candidates are found set-based, each is then judged by the same rule as
    the incremental path."""
    made = 0
    for study_id in generation_candidates(server_id, generation):
        study = db.session.get(OrthancStudy, study_id)
        if study is not None:
            made += len(match_study(study))
    return made


def _link(study: OrthancStudy, req: ImagingRequest, method: str, user: User | None, *, warning: str = "",
          other_patient: bool = False, reason: str = "") -> StudyLink:
    link = StudyLink(study=study, request=req, method=method, created_by_id=user.id if user else None,
                     warning=warning, other_patient=other_patient, reason=reason)
    db.session.add(link)
    req.images_available = True
    note = _("%(identity)s; accession \u201c%(accession)s\u201d", identity=study_identity(study),
             accession=study.accession_number)
    if warning:
        note += f". {warning}"
    if other_patient:
        note += ". " + _("Linked to another patient's request (%(patient)s). Reason: %(reason)s",
                         patient=patient_identity(req.patient), reason=reason)
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=dicom_id(study.patient_id)[:64], request_id=req.id, action="link",
                             method=method, user_id=user.id if user else None, note=note))
    if other_patient:
        db.session.add(RequestEvent(request_id=req.id, user_id=user.id if user else None,
                                    action="other patient's study", from_state=req.state, to_state=req.state,
                                    note=_("Linked a study of %(identity)s. Reason: %(reason)s",
                                           identity=study_identity(study), reason=reason)))
    return link


def _after_link(req: ImagingRequest) -> None:
    """The modality has done its work: the worklist item goes away."""
    from ..worklists import writer

    try:
        writer.remove(req)
    except Exception:
        log.exception("could not remove the worklist file of %s", req.accession_number)


def link(study: OrthancStudy, req: ImagingRequest, user: User | None, *,
         confirm_other_patient: bool = False, reason: str = "") -> StudyLink:
    """Link by hand (Inbox, study page, API, upload for a request). A study
    of another patient (its PatientID is not the request patient's PUID)
    needs ``confirm_other_patient`` and a reason; without them
    :class:`OtherPatientError` says whose study it is."""
    if req.state not in LINKABLE:
        raise LinkError(_("Request %(accession)s is %(state)s; a study cannot be linked to it.",
                          accession=req.accession_number, state=req.state_enum.word))
    if is_linked(study, req):
        raise LinkError(_("The study is already linked to request %(accession)s.", accession=req.accession_number))
    reason = " ".join((reason or "").split())
    if len(reason) > 1000:
        raise LinkError(_("The reason is at most %(max)d characters.", max=1000))
    other = not same_patient(study, req.patient)
    if other and not (confirm_other_patient and reason):
        raise OtherPatientError(_(
            "This study is of another patient (%(study_patient)s) than request %(accession)s (%(patient)s). "
            "To link it anyway, confirm that it belongs to this request and give a reason.",
            study_patient=study_identity(study), accession=req.accession_number,
            patient=patient_identity(req.patient)))
    warning = "" if other else " ".join(identity_differences(study, req.patient))
    made = _link(study, req, "manual", user, warning=warning, other_patient=other, reason=reason if other else "")
    db.session.flush()
    _after_link(req)
    return made


def confirm(link_row: StudyLink, user: User) -> None:
    """A person checked a link whose identity differed and found it right."""
    if link_row.confirmed_at is not None or not link_row.warning:
        raise LinkError(_("This link needs no confirmation."))
    link_row.confirmed_at = utcnow()
    link_row.confirmed_by_id = user.id
    study = link_row.study
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=dicom_id(study.patient_id)[:64], request_id=link_row.request_id,
                             action="confirm", method="manual", user_id=user.id,
                             note=f"Identity checked: {link_row.warning}"))
    db.session.flush()


def unlink(study: OrthancStudy, req: ImagingRequest, user: User | None) -> None:
    row = db.session.scalar(select(StudyLink).where(StudyLink.study_id == study.id, StudyLink.request_id == req.id))
    if row is None:
        raise LinkError(_("The study is not linked to request %(accession)s.", accession=req.accession_number))
    db.session.delete(row)
    db.session.flush()
    req.images_available = bool(db.session.scalar(select(func.count()).select_from(StudyLink)
                                                   .where(StudyLink.request_id == req.id)))
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=dicom_id(study.patient_id)[:64], request_id=req.id,
                             action="unlink", method="manual", user_id=user.id if user else None))
    db.session.flush()
    if not req.images_available:
        reoffer([req])  # offered to the modality again


def forget_studies(study_ids: list[int]) -> list[ImagingRequest]:
    """Studies gone from Orthanc: drop their links, record it, and put
    requests left without images back as they were. Returns the requests
    that lost their last study, for :func:`reoffer`."""
    links = list(db.session.scalars(select(StudyLink).where(StudyLink.study_id.in_(study_ids))))
    affected = {lk.request_id: lk.request for lk in links}
    for lk in links:
        db.session.add(LinkEvent(server_id=lk.study.server_id, study_uid=lk.study.study_uid,
                                 patient_id=dicom_id(lk.study.patient_id)[:64], request_id=lk.request_id,
                                 action="delete", method="orthanc", note="study no longer in Orthanc"))
        db.session.delete(lk)
    db.session.flush()
    bare = []
    for req_id, req in affected.items():
        req.images_available = bool(db.session.scalar(select(func.count()).select_from(StudyLink)
                                                       .where(StudyLink.request_id == req_id)))
        if not req.images_available:
            bare.append(req)
    return bare


def reoffer(requests: list[ImagingRequest]) -> None:
    """Requests whose images are gone go back on the worklist if still
    requested; a file that cannot be written records why on the request
    (``writer.sync`` never raises)."""
    from ..worklists import writer

    for req in requests:
        writer.sync(req)


def flag_shared(study_ids: list[int]) -> None:
    """Links made before a second patient's study with the same UID
    arrived: they stay (the PatientID agreed) but a person must look."""
    text = "Its StudyInstanceUID is also used by a study of another patient."
    for lk in db.session.scalars(select(StudyLink).where(StudyLink.study_id.in_(study_ids))):
        if text not in lk.warning:
            lk.warning = f"{lk.warning} {text}".strip()
            lk.confirmed_at = None
