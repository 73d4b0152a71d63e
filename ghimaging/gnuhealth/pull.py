"""Reading from GNU Health: patients looked up by PUID or name and imported
into the register, and GNU Health's imaging requests in ``requested``
imported as ghimaging requests so that they reach the worklist.

A GNU Health request that cannot be imported (unknown test, a patient
without PUID, a name the worklist cannot carry) is recorded with the
reason and shown, never skipped in silence; one imported and later deleted
or closed there is reported the same way, and never cancelled here by
itself.

These functions only change the session; the loop over GNU Health's
requests, which commits each import on its own, is ``worker.pull_requests``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import event, insert, or_, select, update
from sqlalchemy.orm import Session, UOWTransaction

from ..exceptions import Conflict, Invalid
from ..extensions import db
from ..models import GnuHealthConfig, GnuHealthLink, ImagingRequest, ImagingTest, LinkKind, Patient, RequestState
from ..models._time import utcnow
from ..querytools import rowcount
from . import links
from .client import GnuHealthClient
from .outbox import IMPORTING
from .remote import Remote, RemotePatient


class ImportProblem(Conflict):
    """A GNU Health record that cannot be imported as it is (no PUID, a
    PUID that is someone else here, a test without a local one...); the
    message says why and what to change."""

    code = "import_problem"


@dataclass
class PullSummary:
    imported: list[str] = field(default_factory=list)     # accession numbers of new requests
    problems: list[str] = field(default_factory=list)
    seen: int = 0
    error: str = ""

    def line(self) -> str:
        if self.error:
            return f"pull: failed: {self.error}"
        text = f"pull: {self.seen} requested in GNU Health, {len(self.imported)} imported"
        return text + (f", {len(self.problems)} problem(s)" if self.problems else "")


# -- patients ---------------------------------------------------------------------

def search_patients(client: GnuHealthClient, query: str) -> list[tuple[RemotePatient, Patient | None]]:
    """GNU Health's patients matching ``query``, each with its local copy."""
    query = (query or "").strip()
    if not query:
        return []
    if len(query) > 100:
        too_long = _("Search for at most 100 characters.")
        raise Invalid(too_long, fields={"q": too_long})
    found = Remote(client).find_patients(query)
    known = links.local_ids(LinkKind.PATIENT, [p.id for p in found])
    out = []
    for rp in found:
        link = known.get(rp.id)
        local = db.session.get(Patient, link.local_id) if link and link.local_id else None
        if local is None and rp.puid:
            local = db.session.scalar(select(Patient).where(Patient.puid == rp.puid))
            if local is not None and rp.differs_from(local.family_name, local.given_name, local.birth_date):
                local = None  # same PUID, another person: not shown as its copy (importing it is refused)
        out.append((rp, local))
    return out


def import_patient(client: GnuHealthClient, remote_id: int) -> Patient:
    """GNU Health's patient ``remote_id`` in the register (see ``upsert_patient``)."""
    rp = Remote(client).patient(remote_id)
    if rp is None:
        raise ImportProblem(_("GNU Health has no patient %(id)s.", id=remote_id))
    return upsert_patient(rp)


def upsert_patient(rp: RemotePatient) -> Patient:
    """Create the local patient from GNU Health's, or bring it up to date;
    flushed, with its link. On :class:`ImportProblem` the caller rolls back."""
    from ..patients import service as patients

    if not rp.puid:
        raise ImportProblem(_("GNU Health patient %(name)s (id %(id)s) has no PUID: give it one there.",
                              name=rp.full_name, id=rp.id))
    link = links.by_remote(LinkKind.PATIENT, rp.id)
    patient = db.session.get(Patient, link.local_id) if link and link.local_id else None
    if patient is None:
        patient = patients.by_puid(rp.puid)
        # Not linked to this GNU Health record: the same PUID alone does not
        # make it the same person. A different name or birth date is
        # refused, never copied over the local patient.
        differs = rp.differs_from(patient.family_name, patient.given_name, patient.birth_date) \
            if patient is not None else []
        if patient is not None and differs:
            born = patient.birth_date.isoformat() if patient.birth_date else _("birth date unknown")
            raise ImportProblem(_(
                "GNU Health patient %(puid)s (id %(id)s) is %(there)s, but here %(puid)s is %(name)s (%(born)s): "
                "the %(what)s differ. Nothing was imported or changed; correct the PUID or the identity on one "
                "side first.", puid=rp.puid, id=rp.id, there=rp.identity(), name=patient.full_name, born=born,
                what=", ".join(differs)))
    data = {"puid": rp.puid, "family_name": rp.family_name or rp.given_name, "given_name": rp.given_name,
            "birth_date": rp.birth_date, "sex": rp.sex}
    try:
        if patient is None:
            patient = patients.create_patient(data)
            origin = "pulled"
        else:
            current = patients.to_json(patient)
            if any(current[k] != (v.isoformat() if isinstance(v, date) else v) for k, v in data.items()):
                patients.update_patient(patient, {**current, **data})
            origin = link.origin if link else "found"
    except patients.PatientError as exc:
        raise ImportProblem(_("GNU Health patient %(puid)s cannot be imported: %(error)s", puid=rp.puid,
                              error=exc)) from None
    links.put(LinkKind.PATIENT, patient.id, rp.id, origin=origin, label=rp.puid)
    db.session.flush()
    return patient


# -- requests ------------------------------------------------------------------------

def _local_test(row: dict[str, Any]) -> ImagingTest:
    remote_test = int(row["requested_test"])
    link = links.by_remote(LinkKind.TEST, remote_test)
    if link is not None and link.local_id:
        test = db.session.get(ImagingTest, link.local_id)
        if test is not None:
            return test
    info = row.get("requested_test.") or {}
    code, name = str(info.get("code") or ""), str(info.get("name") or "")
    test = db.session.scalar(select(ImagingTest).where(ImagingTest.code == code)) if code else None
    if test is None:
        raise ImportProblem(_("GNU Health test %(code)s (%(name)s) has no ghimaging test: add one with code "
                              "%(code)s to the catalogue, or map it on the GNU Health tests page.", code=code,
                              name=name))
    links.put(LinkKind.TEST, test.id, remote_test, origin="found", label=code)
    return test


def import_request(remote: Remote, row: dict[str, Any]) -> ImagingRequest:
    """One GNU Health request as a ghimaging request, submitted (so it is on
    the worklist) with our own accession number and UID. The link is written
    in the same transaction as the request (see ``_link_imported``)."""
    from ..imaging import workflow

    rp = remote.patient(int(row["patient"]))
    if rp is None:
        raise ImportProblem(_("GNU Health request %(id)s: its patient cannot be read.", id=row["id"]))
    patient = upsert_patient(rp)
    test = _local_test(row)
    doctor = (row.get("doctor.") or {}).get("rec_name") or ""
    context = (row.get("context.") or {}).get("rec_name") or ""
    order = row.get("request") or row["id"]
    note = (_("GNU Health order %(order)s, requested by %(doctor)s", order=order, doctor=doctor) if doctor
            else _("GNU Health order %(order)s", order=order))
    comment = "\n\n".join(p for p in ((row.get("comment") or "").strip(), note) if p)[:4000]
    db.session.info[IMPORTING] = {"remote_id": int(row["id"]), "label": str(row.get("request") or "")}
    try:
        req = workflow.create_order(patient, [test], user=None, physician=None, urgent=bool(row.get("urgent")),
                                    clinical_context=context[:4000], comment=comment, submit=True)[0]
    except workflow.WorkflowError as exc:
        raise ImportProblem(_("GNU Health request %(order)s for %(puid)s: %(error)s", order=order,
                              puid=patient.puid, error=exc)) from None
    finally:
        db.session.info.pop(IMPORTING, None)
    return req


def _link_imported(session: Session, flush_context: UOWTransaction) -> None:
    """After the flush that inserts an imported request, its link, in the
    same transaction: a request is never imported twice, whatever stops."""
    marker = session.info.get(IMPORTING)
    if not isinstance(marker, dict):
        return
    for obj in session.new:
        if isinstance(obj, ImagingRequest) and obj.id is not None:
            values = dict(local_id=obj.id, origin="pulled", remote_state="requested",
                          remote_label=marker["label"][:200], problem="", synced_at=utcnow())
            # A row may be there already: the problem of an earlier try.
            done = session.execute(update(GnuHealthLink).where(
                GnuHealthLink.kind == LinkKind.REQUEST.value, GnuHealthLink.remote_id == marker["remote_id"])
                .values(**values).execution_options(synchronize_session=False))
            if rowcount(done) == 0:
                session.execute(insert(GnuHealthLink).values(kind=LinkKind.REQUEST.value,
                                                             remote_id=marker["remote_id"], **values))
            session.info[IMPORTING] = True  # one request per import
            return


def listen() -> None:
    from flask_sqlalchemy.session import Session as FlaskSession

    if not event.contains(FlaskSession, "after_flush", _link_imported):
        event.listen(FlaskSession, "after_flush", _link_imported)


def record_problem(remote_id: int, label: str, problem: str) -> None:
    """Why GNU Health's request ``remote_id`` was not imported, shown on the
    settings page and retried by the next pull."""
    link = links.by_remote(LinkKind.REQUEST, remote_id)
    if link is None:
        db.session.add(GnuHealthLink(kind=LinkKind.REQUEST.value, local_id=None, remote_id=remote_id,
                                     origin="pulled", remote_state="requested", remote_label=label[:200],
                                     problem=problem))
    else:
        link.problem = problem
        link.synced_at = utcnow()


def requested_rows(remote: Remote, summary: PullSummary) -> list[dict[str, Any]]:
    """GNU Health's requests in ``requested`` that are not imported yet
    (counted in ``summary.seen``, all of them)."""
    rows = remote.requested_requests()
    summary.seen = len(rows)
    known = links.local_ids(LinkKind.REQUEST, [int(r["id"]) for r in rows])
    out = []
    for row in rows:
        link = known.get(int(row["id"]))
        if link is None or link.local_id is None:
            out.append(row)
    return out


def link_if_ours(row: dict[str, Any]) -> bool:
    """A request ghimaging sent there itself (its order line is one of our
    accession numbers) whose link was never written: the push's answer was
    lost after GNU Health made it. Linked now, never imported as a new order."""
    line = str(row.get("request_line") or "").strip()
    if not line:
        return False
    req = db.session.scalar(select(ImagingRequest).where(ImagingRequest.accession_number == line))
    if req is None:
        return False
    link = links.put(LinkKind.REQUEST, req.id, int(row["id"]), origin="pushed",
                     remote_state=str(row.get("state") or ""), label=req.order_number)
    link.origin = "pushed"  # a problem row of an earlier pull said "pulled": it was ours all along
    return True


def check_imported(remote: Remote) -> list[str]:
    """Imported requests still waiting here whose GNU Health request was
    deleted or closed there: reported on the request, never cancelled here."""
    rows = db.session.execute(select(GnuHealthLink, ImagingRequest).join(
        ImagingRequest, ImagingRequest.id == GnuHealthLink.local_id).where(
        GnuHealthLink.kind == LinkKind.REQUEST.value, GnuHealthLink.origin == "pulled",
        ImagingRequest.state.in_([RequestState.DRAFT.value, RequestState.REQUESTED.value]))).all()
    if not rows:
        return []
    states = remote.requests([link.remote_id for link, _req in rows])
    problems = []
    for link, req in rows:
        there = states.get(link.remote_id)
        if there is None:
            link.remote_state = "deleted"
            link.problem = _("Deleted in GNU Health (order %(order)s): cancel it here if it is no longer wanted.",
                             order=link.remote_label or link.remote_id)
        elif there["state"] != "requested":
            link.remote_state = str(there["state"])
            link.problem = _("GNU Health's request %(order)s is now %(state)s there, without a result from "
                             "ghimaging.", order=link.remote_label or link.remote_id, state=there["state"])
        else:
            link.remote_state, link.problem = "requested", ""
            continue
        problems.append(f"{req.accession_number}: {link.problem}")
    return problems


def record_pull(summary: PullSummary) -> None:
    """When the last pull ran and how it ended, for the settings page."""
    cfg = db.session.get(GnuHealthConfig, 1)
    if cfg is not None:
        cfg.last_pull_at = utcnow()
        cfg.last_pull_error = summary.error


def pull_due(interval: int) -> bool:
    """Claim the next pull for this process when it is due (a conditional
    UPDATE, so that several workers do not pull at once); the caller
    commits the claim at once, before pulling."""
    if not interval:
        return False
    now = utcnow()
    res = db.session.execute(update(GnuHealthConfig).where(
        GnuHealthConfig.id == 1, GnuHealthConfig.enabled.is_(True),
        or_(GnuHealthConfig.next_pull_at.is_(None), GnuHealthConfig.next_pull_at <= now))
        .values(next_pull_at=now + timedelta(seconds=interval)).execution_options(synchronize_session=False))
    return rowcount(res) == 1
