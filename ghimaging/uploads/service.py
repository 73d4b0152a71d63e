"""DICOM upload: what the user sends goes to Orthanc's ``POST /instances``
one file at a time, streamed from temporary files, with an outcome per file.

Orthanc silently skips what is not DICOM inside a ZIP, so archives are
opened here, and every file gets its own line: stored, already stored,
rejected (not DICOM) or failed (Orthanc's reason).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import IO, Iterable

from flask import current_app

from ..models import OrthancServer
from ..orthanc.client import OrthancClient, OrthancError, Unreachable
from ..orthanc.servers import client_for
from . import archive

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    name: str
    status: str  # stored | already | rejected | failed
    detail: str = ""
    study: str = ""  # Orthanc study id


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)  # Orthanc ids, in order of arrival
    aborted: str = ""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def as_dict(self) -> dict:
        return {"outcomes": [asdict(o) for o in self.outcomes], "studies": self.studies, "aborted": self.aborted,
                "counts": {s: self.count(s) for s in ("stored", "already", "rejected", "failed")}}


def limits() -> archive.Limits:
    c = current_app.config
    return archive.Limits(max_files=c["UPLOAD_MAX_FILES"], max_expanded_bytes=c["UPLOAD_MAX_EXPANDED_BYTES"],
                          max_member_bytes=c["UPLOAD_MAX_FILE_BYTES"])


def _post(client: OrthancClient, member: archive.Member, report: Report) -> None:
    try:
        answer = client.upload(member.file)
    except Unreachable as exc:
        report.outcomes.append(Outcome(member.name, "failed", str(exc)))
        report.aborted = f"Orthanc stopped answering: {exc}"
        return
    except OrthancError as exc:
        text = str(exc)
        if "400" in text:
            report.outcomes.append(Outcome(member.name, "rejected", "Orthanc cannot read it as DICOM "
                                                                    "(damaged or truncated?)"))
        else:
            report.outcomes.append(Outcome(member.name, "failed", text))
        return
    status = str(answer.get("Status", "")) if isinstance(answer, dict) else ""
    study = str(answer.get("ParentStudy", "")) if isinstance(answer, dict) else ""
    if status == "Success":
        report.outcomes.append(Outcome(member.name, "stored", "", study))
    elif status == "AlreadyStored":
        report.outcomes.append(Outcome(member.name, "already", "already in Orthanc", study))
    else:
        report.outcomes.append(Outcome(member.name, "failed", f"Orthanc answered {status or answer!r}", study))
        return
    if study and study not in report.studies:
        report.studies.append(study)


def process(server: OrthancServer, files: Iterable[tuple[str, IO[bytes]]]) -> Report:
    """Send every DICOM file found in ``files`` to ``server``.

    Orthanc stores several instances at once faster than one after another,
    so a few connections send in parallel; at most that many files (each a
    temporary file, never in memory) are in flight, and the outcome table
    keeps the order of the upload.
    """
    report = Report()
    bounds = limits()
    budget = archive.Budget(bounds)
    workers = max(1, int(current_app.config["UPLOAD_CONNECTIONS"]))
    # Clients are made here, in the app context; each sending thread takes one.
    clients = [client_for(server, timeout=(3.05, 300)) for _ in range(workers)]
    free: queue.SimpleQueue = queue.SimpleQueue()
    for c in clients:
        free.put(c)
    local = threading.local()

    def client() -> OrthancClient:
        if not hasattr(local, "client"):
            local.client = free.get()
        return local.client

    def send(member: archive.Member) -> Report:
        one = Report()
        try:
            _post(client(), member, one)
        finally:
            member.close()
        return one

    pending: list = []  # Outcome or Future, in upload order
    in_flight: set[Future] = set()  # at most 2 x workers files waiting or being sent
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
            for name, stream in files:
                name = archive.display(name)
                try:
                    budget.take(0)  # every file picked counts against UPLOAD_MAX_FILES
                    for item in archive.walk(stream, name, bounds, budget):
                        if isinstance(item, archive.Rejected):
                            pending.append(Outcome(item.name, "rejected", item.reason))
                            continue
                        if len(in_flight) >= 2 * workers:
                            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                            in_flight.difference_update(done)
                        future = pool.submit(send, item)
                        in_flight.add(future)
                        pending.append(future)
                except archive.LimitExceeded as exc:
                    pending.append(Outcome(name, "failed", f"stopped: {exc}"))
                    report.aborted = f"The upload was stopped: {exc}."
                    break
            for entry in pending:
                if isinstance(entry, Outcome):
                    report.outcomes.append(entry)
                    continue
                try:
                    one = entry.result()
                except Unreachable as exc:
                    report.outcomes.append(Outcome("(file)", "failed", str(exc)))
                    report.aborted = report.aborted or f"Orthanc stopped answering: {exc}"
                    continue
                report.outcomes.extend(one.outcomes)
                if one.aborted and not report.aborted:
                    report.aborted = one.aborted
                for study in one.studies:
                    if study not in report.studies:
                        report.studies.append(study)
    finally:
        for c in clients:
            c.close()
    return report


def sync_and_link(server: OrthancServer, report: Report, request_id: int | None, user) -> list:
    """Mirror the studies just stored now (not at the next tick) and, when
    asked, link them to the chosen request."""
    from ..extensions import db
    from ..models import ImagingRequest, OrthancStudy
    from ..orthanc import matching, sync
    from sqlalchemy import select

    if report.studies:
        sync.run(server.id, mode="auto")
    studies = list(db.session.scalars(select(OrthancStudy).where(
        OrthancStudy.server_id == server.id, OrthancStudy.orthanc_id.in_(report.studies))))
    if request_id:
        req = db.session.get(ImagingRequest, request_id)
        if req is not None:
            for study in studies:
                if not any(l.request_id == req.id for l in matching.requests_of(study)):
                    try:
                        matching.link(study, req, user)
                    except matching.LinkError as exc:
                        report.aborted = report.aborted or str(exc)
    return studies
