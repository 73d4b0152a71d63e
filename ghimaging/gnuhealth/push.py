"""Sending a request and its result to GNU Health.

Each function makes GNU Health match the local record as it is now, so an
outbox item that runs twice (a retry after a lost answer, two changes
folded into one) does the same as one run. What is created there is looked
up first by a key ghimaging chose: the patient's PUID, the test's code, our
accession number as the request's order line, the request as the result's,
our file names as the attachments'.

What is written there for people (the request's comment, the addenda's
heading, a problem) is in the clinic's language: pushes run in the outbox
worker or the CLI, outside any request (``i18n.select_locale``).
"""

from __future__ import annotations

from pathlib import Path

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from .. import clock
from ..exceptions import Conflict
from ..models import GnuHealthConfig, ImagingRequest, LinkKind, Patient, RequestState, Result, ResultImage
from ..ui import local_time
from . import links
from .client import GnuHealthError, NoProfessional
from .remote import Remote


class PatientMismatch(GnuHealthError, Conflict):
    """GNU Health's patient with our PUID is someone else (another name or
    birth date): never used, never overwritten; a person must look. A
    conflict of data, not a failing server (it is never retried)."""

    code = "patient_mismatch"


def request_key(req: ImagingRequest) -> str:
    """The order line written on the request there (GNU Health keeps a
    ``request_line`` sent to it): our accession number, unique here."""
    return req.accession_number


def ensure_patient(remote: Remote, patient: Patient) -> int:
    """GNU Health's patient for ours: linked, else found by PUID, else
    created (before any image of it reaches an Orthanc GNU Health syncs:
    its sync stops on a PatientID of 9+ characters it does not know).
    One found by PUID (or made by someone else while we created it) is used
    only when it is the same person: names and birth date agree."""
    known = links.remote_id(LinkKind.PATIENT, patient.id)
    if known is not None:
        return known
    found = remote.patient_by_puid(patient.puid)
    origin = "found"
    if found is None:
        found = remote.create_patient(puid=patient.puid, family_name=patient.family_name,
                                      given_name=patient.given_name, birth_date=patient.birth_date,
                                      sex=patient.sex)
        origin = "pushed"
    there = remote.patient(found)
    if there is not None:
        differs = there.differs_from(patient.family_name, patient.given_name, patient.birth_date)
        if differs:
            born = patient.birth_date.isoformat() if patient.birth_date else _("birth date unknown")
            raise PatientMismatch(_(
                "GNU Health's patient with PUID %(puid)s (id %(id)s) is %(there)s, but here %(puid)s is "
                "%(name)s (%(born)s): the %(what)s differ. Nothing was sent; correct the PUID or the identity on "
                "one side, then retry.", puid=patient.puid, id=found, there=there.identity(),
                name=patient.full_name, born=born, what=", ".join(differs)))
    links.put(LinkKind.PATIENT, patient.id, found, origin=origin, label=patient.puid)
    return found


def ensure_test(remote: Remote, req: ImagingRequest) -> int:
    """The test mapped by hand, else found by code, else created with its
    type (the modality) and a service product."""
    test = req.test
    known = links.remote_id(LinkKind.TEST, test.id)
    if known is not None:
        return known
    found = remote.test_by_code(test.code)
    if found is not None:
        links.put(LinkKind.TEST, test.id, found, origin="found", label=test.code)
        return found
    created = remote.create_test(code=test.code, name=test.name, type_code=test.modality.code,
                                 type_name=test.modality.name)
    links.put(LinkKind.TEST, test.id, created, origin="pushed", label=test.code)
    return created


def doctor_for(remote: Remote, cfg: GnuHealthConfig, req: ImagingRequest) -> int:
    """The professional of the ordering physician (same login there), else
    the configured default, else the API user's own professional."""
    for user in (req.requesting_physician, req.created_by):
        if user is not None:
            found = remote.professional_of_login(user.username)
            if found is not None:
                return found
    if cfg.default_professional_id:
        return cfg.default_professional_id
    if cfg.professional_id:
        return cfg.professional_id
    raise NoProfessional(_("No GNU Health professional for this request: the ordering user has none there, no "
                           "default professional is set and the GNU Health user is not linked to one."))


def _comment(req: ImagingRequest) -> str:
    parts = [p for p in (req.clinical_context.strip(), req.comment.strip()) if p]
    parts.append(_("ghimaging order %(order)s, accession %(accession)s", order=req.order_number,
                   accession=req.accession_number))
    return "\n\n".join(parts)


def push_request(remote: Remote, cfg: GnuHealthConfig, req: ImagingRequest) -> int:
    """Create the request there (as a draft), or find it; then move it to
    ``requested`` once it is requested here. Returns its GNU Health id."""
    link = links.get(LinkKind.REQUEST, req.id)
    if link is not None and link.origin == "pulled":
        return link.remote_id  # GNU Health's own request: it already knows everything
    if link is not None and req.state == RequestState.DONE.value and link.remote_state in ("requested", "done"):
        return link.remote_id  # nothing left to change there: its result closes it
    row = remote.request(link.remote_id) if link is not None else remote.request_by_line(request_key(req))
    if row is None:
        if req.state == RequestState.CANCELLED.value:
            # Never sent and already cancelled: nothing to tell GNU Health.
            return 0
        values = {
            "patient": ensure_patient(remote, req.patient),
            "requested_test": ensure_test(remote, req),
            "doctor": doctor_for(remote, cfg, req),
            "date": req.created_at.replace(microsecond=0),
            "urgent": bool(req.urgent),
            "comment": _comment(req),
            "request": req.order_number,
            "request_line": request_key(req),
        }
        remote_id = remote.create_request(values)
        state = "draft"
        origin = "pushed"
    else:
        remote_id, state = int(row["id"]), str(row["state"])
        origin = "pushed" if link is not None else "found"
        if state in ("draft", "requested"):
            wanted = {"urgent": bool(req.urgent), "comment": _comment(req)}
            if {"urgent": bool(row.get("urgent")), "comment": row.get("comment") or ""} != wanted:
                remote.write_request(remote_id, wanted)
    if state == "draft" and req.state in (RequestState.REQUESTED.value, RequestState.DONE.value):
        remote.mark_requested(remote_id)
        state = "requested"
    problem = ""
    if req.state == RequestState.CANCELLED.value and state in ("draft", "requested"):
        problem = _("Cancelled in ghimaging (%(reason)s); GNU Health has no cancelled state: cancel or delete "
                    "it there.", reason=req.cancel_reason)
    links.put(LinkKind.REQUEST, req.id, remote_id, origin=origin, remote_state=state,
              label=req.order_number, problem=problem)
    return remote_id


def report_text(result: Result) -> str:
    """The report as GNU Health's result comment, addenda after it."""
    who = result.radiologist.display_name if result.radiologist else ""
    text = result.report.strip()
    if who:
        text += f"\n\n— {who}"
    for add in result.addenda:
        author = add.author.display_name if add.author else ""
        when = f"{local_time(add.created_at)} ({clock.zone().key})"  # the clinic's clock, as its pages show
        heading = (_("Addendum %(when)s — %(author)s:", when=when, author=author) if author
                   else _("Addendum %(when)s:", when=when))
        text += f"\n\n{heading}\n{add.text}"
    return text


def attachment_name(req: ImagingRequest, image: ResultImage) -> str:
    suffix = {"image/png": "png", "image/jpeg": "jpg"}.get(image.content_type, "bin")
    return f"ghimaging-{req.accession_number}-{image.id}.{suffix}"


def push_result(remote: Remote, cfg: GnuHealthConfig, req: ImagingRequest, image_dir: Path) -> int:
    """The result (GNU Health's wizard, which also closes the request), its
    comment, the key images as attachments and, with health_orthanc, the
    study pointing at it. Returns the result's GNU Health id."""
    result = req.result
    if result is None or not result.is_final:
        return 0
    request_id = push_request(remote, cfg, req)
    result_link = links.get(LinkKind.RESULT, result.id)
    found = result_link.remote_id if result_link is not None else remote.result_of_request(request_id)
    fresh = found is None
    result_id = remote.generate_result(request_id) if found is None else found
    links.put(LinkKind.RESULT, result.id, result_id, origin="pushed")
    remote.write_result(result_id, {"comment": report_text(result)})
    # A result made by this very run has no attachments yet; any other may
    # hold some from a run whose answer was lost.
    have = set() if fresh else remote.attachment_names(result_id)
    new = []
    for image in result.images:
        name = attachment_name(req, image)
        if name not in have:
            new.append((name, (image_dir / image.stored_name).read_bytes(), image.caption or ""))
    remote.add_attachments(result_id, new)
    if cfg.has_module("health_orthanc"):
        link_study(remote, req, result_id)
    links.put(LinkKind.REQUEST, req.id, request_id, origin="pushed", remote_state="done")
    return result_id


def study_uids(req: ImagingRequest) -> list[str]:
    """The UIDs of the studies linked to the request here that are the
    request's patient's own: PatientID equal to its PUID, not linked by hand
    to another patient, and not a UID that studies of two patients share.
    Never the request's allocated UID by itself: a study of someone else
    can carry it (ghimaging's link rules refuse such a study)."""
    from ..orthanc.matching import studies_of

    puid = req.patient.puid
    return sorted({link.study.study_uid for link in studies_of(req)
                   if not link.other_patient and not link.study.uid_shared
                   and (link.study.patient_id or "").strip() == puid})


def link_study(remote: Remote, req: ImagingRequest, result_id: int) -> int:
    """Point GNU Health's copy of the study at the result (its own merge-id
    rule cannot: it only takes UIDs under its hard-coded root). Only the
    studies linked here (``study_uids``), and there only those with the
    patient's PUID as PatientID. Studies it does not hold yet are left;
    returns how many were linked now."""
    rows = remote.studies_by_uid(study_uids(req), req.patient.puid)
    todo = [int(r["id"]) for r in rows if r.get("imaging_test") != result_id]
    remote.link_studies(todo, result_id)
    return len(todo)
