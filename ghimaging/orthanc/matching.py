"""Studies find their orders, and never another patient's.

This module is the one home of the rules that join images, orders and
patients. The sync (incremental and full), the Inbox, the API and the
upload "for request" link all come through :func:`assess`, :func:`link`
and :func:`match_study`.

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

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, or_, select

from ..extensions import db
from ..models import ImagingRequest, LinkEvent, OrthancStudy, Patient, RequestEvent, RequestState, StudyLink, User
from ..models._time import utcnow
from ..models.patients import fold

log = logging.getLogger(__name__)

# Requests a study may be linked to, automatically or by hand.
LINKABLE = (RequestState.REQUESTED.value, RequestState.DONE.value)
SUGGEST_DAYS = 3


class LinkError(ValueError):
    """A link or unlink that cannot be made; the message is safe to show."""


class OtherPatientError(LinkError):
    """The study is not of the request's patient: linking needs an explicit
    confirmation and a reason."""


# -- identity -------------------------------------------------------------------

def dicom_id(value: str | None) -> str:
    """PatientID (LO) and AccessionNumber (SH) without the leading and
    trailing spaces DICOM does not count."""
    return (value or "").strip(" ")


def near_id_reason(patient_id: str, puid: str) -> str:
    """Why two different ids look like one patient's (case, leading zeros,
    spaces), or "" when they do not. They stay different for linking."""
    a, b = dicom_id(patient_id), dicom_id(puid)
    if not a or not b or a == b:
        return ""
    what = []
    if a.casefold() == b.casefold():
        what.append("letter case")
    elif a.replace(" ", "").casefold() == b.replace(" ", "").casefold():
        what.append("spaces")
    else:
        def strip0(x: str) -> str:
            return x.replace(" ", "").casefold().lstrip("0")
        if strip0(a) and strip0(a) == strip0(b):
            what.append("leading zeros")
    return " and ".join(what)


def _translit(text: str) -> str:
    """German-style spellings (ä -> ae) as modalities often type them."""
    for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("Ä", "AE"), ("Ö", "OE"), ("Ü", "UE")):
        text = text.replace(a, b)
    return text


def _folds(text: str) -> set[str]:
    return {" ".join(fold(t).replace("-", " ").split()) for t in (text, _translit(text))}


def name_matches(person_name: str, family: str, given: str) -> bool:
    """Does any PN group (alphabetic, ideographic, phonetic) of a DICOM name
    spell the register's family and given names? Case, accents and the
    German ä/ae spellings are forgiven; a missing or different given name
    is not."""
    want = {(f, g) for f in _folds(family) for g in _folds(given)}
    for group in (person_name or "").split("="):
        parts = (group.split("^") + [""] * 5)[:5]
        fam, giv, mid = parts[0], parts[1], parts[2]
        given_all = " ".join(p for p in (giv, mid) if p.strip())
        if not fam.strip() and not given_all.strip():
            continue
        if {(f, g) for f in _folds(fam) for g in _folds(given_all)} & want:
            return True
    return False


def _dicom_date(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _show_date(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else (da or "birth date not given")


def _show_name(pn: str) -> str:
    from ..ui import dicom_name

    return dicom_name(pn) or "no name"


def identity_differences(study: OrthancStudy, patient: Patient) -> list[str]:
    """What the study says about the patient that the register does not."""
    out = []
    if not name_matches(study.patient_name, patient.family_name, patient.given_name):
        out.append(f"The name in the study ({_show_name(study.patient_name)}) differs from the register "
                   f"({patient.full_name}).")
    reg = _dicom_date(patient.birth_date)
    if study.birth_date and reg and dicom_id(study.birth_date) != reg:
        out.append(f"The birth date in the study ({_show_date(study.birth_date)}) differs from the register "
                   f"({_show_date(reg)}).")
    return out


def study_identity(study: OrthancStudy) -> str:
    return (f"PatientID \u201c{dicom_id(study.patient_id)}\u201d, {_show_name(study.patient_name)}, "
            f"born {_show_date(study.birth_date)}")


def patient_identity(patient: Patient) -> str:
    born = patient.birth_date.isoformat() if patient.birth_date else "birth date not given"
    return f"PUID \u201c{patient.puid}\u201d, {patient.full_name}, born {born}"


def same_patient(study: OrthancStudy, patient: Patient) -> bool:
    """The study's PatientID is the patient's PUID. Nothing else makes two
    identities one: an Orthanc patient linked to a register patient by hand
    (one PUID typed on a form) only makes its studies likely matches, and
    linking them still needs a confirmation and a reason."""
    return dicom_id(study.patient_id) == patient.puid


# -- the automatic rule -------------------------------------------------------------

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


def _uid_partners(study: OrthancStudy) -> list[str]:
    """PatientIDs of other studies (any server) with this StudyInstanceUID."""
    return sorted(set(db.session.scalars(select(OrthancStudy.patient_id).where(
        OrthancStudy.study_uid == study.study_uid, OrthancStudy.id != study.id,
        OrthancStudy.patient_id != study.patient_id))))


def _named(study: OrthancStudy) -> tuple[list[ImagingRequest], list[ImagingRequest], dict[int, str]]:
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
    by_uid, by_acc, methods = _named(study)
    acc = dicom_id(study.accession_number)
    seen: set[int] = set()
    for req in by_uid + by_acc + _merge_id_requests(study):
        if req.id not in seen:
            seen.add(req.id)
            out.candidates.append(req)
    if not out.candidates:
        out.reasons.append("No request carries this study's StudyInstanceUID or AccessionNumber.")
        return out
    if study.uid_shared:
        partners = ", ".join(f"\u201c{p}\u201d" for p in _uid_partners(study)) or "another"
        out.reasons.append(f"Its StudyInstanceUID is shared by studies of two patients (PatientID "
                           f"\u201c{dicom_id(study.patient_id)}\u201d and {partners}): only a person can tell "
                           "which one belongs to the order.")
    if by_uid and by_acc and {r.id for r in by_uid} != {r.id for r in by_acc}:
        out.reasons.append(f"Its StudyInstanceUID names request {by_uid[0].accession_number} but its "
                           f"AccessionNumber names request {by_acc[0].accession_number}.")
    if len(by_acc) > 1:
        out.reasons.append(f"Its AccessionNumber {acc} matches {len(by_acc)} requests.")
    if out.reasons:
        return out
    for req in out.candidates:
        if req.state == RequestState.DRAFT.value:
            out.reasons.append(f"Request {req.accession_number} is still a draft: submit it, then link the study.")
            continue
        if req.state not in LINKABLE:
            out.reasons.append(f"Request {req.accession_number} is {req.state}.")
            continue
        if _is_linked(study, req):
            continue
        if _manually_unlinked(study, req.id):
            out.reasons.append(f"Staff unlinked this study from request {req.accession_number}; "
                               "it is not linked again automatically.")
            continue
        if dicom_id(study.patient_id) != req.patient.puid:
            near = near_id_reason(study.patient_id, req.patient.puid)
            lead = (f"Its PatientID differs from the PUID of request {req.accession_number}'s patient only by "
                    f"{near}: it may be the same patient, but the ids must agree before a link is made."
                    if near else
                    f"It names request {req.accession_number}, but it is of another patient.")
            out.reasons.append(f"{lead} Study: {study_identity(study)}. Request: {patient_identity(req.patient)}.")
            continue
        out.links.append((req, methods[req.id], " ".join(identity_differences(study, req.patient))))
    return out


def match_study(study: OrthancStudy) -> list[StudyLink]:
    """Make the links :func:`assess` allows. Idempotent; commits."""
    made = [_link(study, req, method, None, warning=warning) for req, method, warning in assess(study).links]
    if made:
        db.session.commit()
        for link in made:
            _after_link(link.request)
    return made


def match_generation(server_id: int, generation: int) -> int:
    """The automatic rule for every unlinked study of one full sync. The
    studies that have any candidate are found with joins (one query per
    key, not one per study); each is then judged by :func:`assess`, the
    same rule as the incremental path."""
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
    made = 0
    for study_id in sorted(ids):
        study = db.session.get(OrthancStudy, study_id)
        if study is not None:
            made += len(match_study(study))
    return made


# -- links ---------------------------------------------------------------------------

def _is_linked(study: OrthancStudy, req: ImagingRequest) -> bool:
    return db.session.scalar(select(exists().where(StudyLink.study_id == study.id,
                                                   StudyLink.request_id == req.id))) or False


def _link(study: OrthancStudy, req: ImagingRequest, method: str, user: User | None, *, warning: str = "",
          other_patient: bool = False, reason: str = "") -> StudyLink:
    link = StudyLink(study=study, request=req, method=method, created_by_id=user.id if user else None,
                     warning=warning, other_patient=other_patient, reason=reason)
    db.session.add(link)
    req.images_available = True
    note = f"{study_identity(study)}; accession \u201c{study.accession_number}\u201d"
    if warning:
        note += f". {warning}"
    if other_patient:
        note += f". Linked to another patient's request ({patient_identity(req.patient)}). Reason: {reason}"
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=dicom_id(study.patient_id)[:64], request_id=req.id, action="link",
                             method=method, user_id=user.id if user else None, note=note))
    if other_patient:
        db.session.add(RequestEvent(request_id=req.id, user_id=user.id if user else None,
                                    action="other patient's study", from_state=req.state, to_state=req.state,
                                    note=f"Linked a study of {study_identity(study)}. Reason: {reason}"))
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
        raise LinkError(f"Request {req.accession_number} is {req.state}; a study cannot be linked to it.")
    if _is_linked(study, req):
        raise LinkError(f"The study is already linked to request {req.accession_number}.")
    reason = " ".join((reason or "").split())
    if len(reason) > 1000:
        raise LinkError("The reason is at most 1000 characters.")
    other = not same_patient(study, req.patient)
    if other and not (confirm_other_patient and reason):
        raise OtherPatientError(
            f"This study is of another patient ({study_identity(study)}) than request {req.accession_number} "
            f"({patient_identity(req.patient)}). To link it anyway, confirm that it belongs to this request "
            "and give a reason.")
    warning = "" if other else " ".join(identity_differences(study, req.patient))
    made = _link(study, req, "manual", user, warning=warning, other_patient=other, reason=reason if other else "")
    db.session.commit()
    _after_link(req)
    return made


def confirm(link_row: StudyLink, user: User) -> None:
    """A person checked a link whose identity differed and found it right."""
    if link_row.confirmed_at is not None or not link_row.warning:
        raise LinkError("This link needs no confirmation.")
    link_row.confirmed_at = utcnow()
    link_row.confirmed_by_id = user.id
    study = link_row.study
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=dicom_id(study.patient_id)[:64], request_id=link_row.request_id,
                             action="confirm", method="manual", user_id=user.id,
                             note=f"Identity checked: {link_row.warning}"))
    db.session.commit()


def unlink(study: OrthancStudy, req: ImagingRequest, user: User | None) -> None:
    row = db.session.scalar(select(StudyLink).where(StudyLink.study_id == study.id, StudyLink.request_id == req.id))
    if row is None:
        raise LinkError(f"The study is not linked to request {req.accession_number}.")
    db.session.delete(row)
    db.session.flush()
    req.images_available = bool(db.session.scalar(select(func.count()).select_from(StudyLink)
                                                   .where(StudyLink.request_id == req.id)))
    db.session.add(LinkEvent(server_id=study.server_id, study_uid=study.study_uid,
                             patient_id=dicom_id(study.patient_id)[:64], request_id=req.id,
                             action="unlink", method="manual", user_id=user.id if user else None))
    db.session.commit()
    if not req.images_available:
        reoffer([req])  # offered to the modality again


def forget_studies(study_ids: list[int]) -> list[ImagingRequest]:
    """Studies gone from Orthanc: drop their links, record it, and put
    requests left without images back as they were. Returns the requests
    that lost their last study; call :func:`reoffer` after committing."""
    links = list(db.session.scalars(select(StudyLink).where(StudyLink.study_id.in_(study_ids))))
    affected = {l.request_id: l.request for l in links}
    for l in links:
        db.session.add(LinkEvent(server_id=l.study.server_id, study_uid=l.study.study_uid,
                                 patient_id=dicom_id(l.study.patient_id)[:64], request_id=l.request_id,
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
    """Requests whose images are gone go back on the worklist if still
    requested; a file that cannot be written records why on the request
    (``writer.sync`` never raises)."""
    from ..worklists import writer

    for req in requests:
        writer.sync(req)


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
        out.append("This StudyInstanceUID is shared by studies of two patients "
                   f"(PatientIDs {', '.join([dicom_id(study.patient_id)] + _uid_partners(study))}).")
    links = requests_of(study)
    if len({l.request.patient_id for l in links}) > 1:
        out.append("This study is linked to requests of different patients. Check the links.")
    for l in links:
        if l.other_patient:
            out.append(f"Linked by hand to request {l.request.accession_number} of another patient "
                       f"({l.request.patient.full_name}). Reason: {l.reason}")
        elif l.needs_review:
            out.append(f"Request {l.request.accession_number}: {l.warning}")
    return out


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


def to_review():
    """Links whose identity differed (name, birth date, a shared UID, a
    PatientID that is not the PUID), not yet confirmed by a person (a
    select, newest first). Links to another patient's request made with a
    confirmation and a reason are not listed: a person checked them, and
    they stay red on their request."""
    return (select(StudyLink).where(StudyLink.warning != "", StudyLink.confirmed_at.is_(None))
            .order_by(StudyLink.id.desc()))


# -- suggestions for the Inbox ---------------------------------------------------------

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
        try:
            who.append(Patient.birth_date == datetime.strptime(birth, "%Y%m%d").date())
        except ValueError:
            pass
    named = _named(study)[2]
    if named:
        who.append(ImagingRequest.id.in_(list(named)))
    day = _study_day(study)
    conds = list(who)
    if day:
        start = datetime.combine(day - timedelta(days=SUGGEST_DAYS), datetime.min.time())
        end = datetime.combine(day + timedelta(days=SUGGEST_DAYS + 1), datetime.min.time())
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
        if _is_linked(study, req):
            continue
        p = req.patient
        reasons, score = [], 0
        same = same_patient(study, p)
        if same:
            reasons.append("same patient (PatientID = PUID)")
            score += 10
        else:
            if manual_local == p.id:
                reasons.append("Orthanc patient linked to this patient by hand")
                score += 6
            near = near_id_reason(study.patient_id, p.puid)
            if near:
                reasons.append(f"PatientID differs from the PUID only by {near}")
                score += 6
            if birth and _dicom_date(p.birth_date) == birth and surnames & set(
                    w for w in fold(p.family_name).replace("-", " ").split()):
                reasons.append("same birth date and family name")
                score += 6
        if req.id in named:
            reasons.append({"study_uid": "its StudyInstanceUID names this request",
                            "accession": "its AccessionNumber names this request",
                            "merge_id": "its merge id names this request"}[named[req.id]])
            score += 6
        if req.test.modality.code in mods:
            reasons.append(f"same modality ({req.test.modality.code})")
            score += 2
        when = req.scheduled_at or req.created_at
        if day and when and abs((when.date() - day).days) <= SUGGEST_DAYS:
            reasons.append("scheduled within a few days" if req.scheduled_at else "ordered within a few days")
            score += 1
        if req.state == RequestState.REQUESTED.value:
            score += 1
        if score < 6:
            # Another patient with nothing but a modality and a date: offer it
            # only while it still waits for its images.
            if req.images_available or score < 3:
                continue
        if not same:
            reasons.append("another patient: linking needs a confirmation and a reason")
        out.append(Suggestion(req, reasons, score, same))
    out.sort(key=lambda s: (not s.same_patient, -s.score, -s.request.id))
    return out[:limit]


def history(study: OrthancStudy | str) -> list[LinkEvent]:
    """Links, unlinks, confirmations and deletions of a study, kept by UID
    (and PatientID: one UID may come under two) so they outlive its row."""
    if isinstance(study, str):
        return list(db.session.scalars(select(LinkEvent).where(LinkEvent.study_uid == study).order_by(LinkEvent.id)))
    return list(db.session.scalars(select(LinkEvent).where(
        LinkEvent.study_uid == study.study_uid,
        LinkEvent.patient_id.in_((dicom_id(study.patient_id)[:64], ""))).order_by(LinkEvent.id)))


def flag_shared(study_ids: list[int]) -> None:
    """Links made before a second patient's study with the same UID
    arrived: they stay (the PatientID agreed) but a person must look."""
    text = "Its StudyInstanceUID is also used by a study of another patient."
    for l in db.session.scalars(select(StudyLink).where(StudyLink.study_id.in_(study_ids))):
        if text not in l.warning:
            l.warning = f"{l.warning} {text}".strip()
            l.confirmed_at = None


def _on_study_synced(sender, study: OrthancStudy, created: bool, **_) -> None:
    try:
        match_study(study)
    except Exception:  # matching must never stop the sync
        db.session.rollback()
        log.exception("matching study %s failed", study.study_uid)


def connect() -> None:
    from .sync import study_synced

    study_synced.connect(_on_study_synced)
