"""DICOM upload: what the user sends goes to Orthanc's ``POST /instances``
one file at a time, streamed from temporary files, with an outcome per file.

Orthanc silently skips what is not DICOM inside a ZIP, so archives are
opened here, and every file gets its own line: stored, already stored,
rejected (not DICOM, damaged) or failed (Orthanc's reason, a bound passed,
Orthanc silent). Orthanc gets a deadline per file and the upload one in all
(:class:`Deadlines`), so a silent Orthanc ends an upload with a report in
seconds instead of holding the worker until gunicorn kills it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import IO, Any, BinaryIO, cast

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..exceptions import Invalid
from ..models import ImagingRequest, OrthancServer, OrthancStudy, User
from ..orthanc.client import OrthancClient, OrthancError, TimedOut, Unreachable
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

    def as_dict(self) -> dict[str, Any]:
        return {"outcomes": [asdict(o) for o in self.outcomes], "studies": self.studies, "aborted": self.aborted,
                "counts": {s: self.count(s) for s in ("stored", "already", "rejected", "failed")}}


def limits() -> archive.Limits:
    c = current_app.config
    return archive.Limits(max_files=c["UPLOAD_MAX_FILES"], max_expanded_bytes=c["UPLOAD_MAX_EXPANDED_BYTES"],
                          max_member_bytes=c["UPLOAD_MAX_FILE_BYTES"])


class UploadRefused(Invalid):
    """An upload refused before anything is sent: no server or no files
    (``code`` "bad_request"), or more files than allowed ("too_large")."""


def check(server: OrthancServer | None, count: int) -> OrthancServer:
    """The server to send to, or :class:`UploadRefused`. The files are
    counted before anything is sent, so an upload one file over the limit
    stores nothing (archive members can only be counted as they are opened:
    past the limit there, the upload stops where it is)."""
    if server is None:
        raise UploadRefused(_("Choose the Orthanc server to send the files to."), code="bad_request")
    if not count:
        raise UploadRefused(_("Choose files or a folder to upload."), code="bad_request")
    limit = current_app.config["UPLOAD_MAX_FILES"]
    if count > limit:
        raise UploadRefused(_("Too many files in one upload (%(count)s); the limit is %(limit)s files. "
                              "Upload in parts.", count=count, limit=limit), code="too_large")
    return server


def upload(server: OrthancServer | None, files: list[tuple[str, IO[bytes]]], request_id: int | None,
           user: User) -> tuple[Report, list[OrthancStudy]]:
    """Check, send every file, mirror the studies stored and link them to
    the request chosen (the caller commits)."""
    server = check(server, len(files))
    report = process(server, files)
    studies = sync_and_link(server, report, request_id, user)
    log.info("upload by %s to %s: %s", user.username, server.label, report.as_dict()["counts"])
    return report, studies


@dataclass
class Deadlines:
    """How long Orthanc may take. ``answer``: seconds Orthanc may stay silent
    while a file is sent and before it answers (the read timeout), plus a
    second per ``STORE_RATE`` bytes of the file, since Orthanc answers only
    once a large file is parsed and written. Each file's whole call is also
    bounded (``answer`` plus a second per ``FLOOR_RATE`` bytes), so an
    Orthanc that trickles its answer a byte at a time cannot hold it either.
    ``total``: seconds the sending of one upload may take; past it, no
    further file is sent. A silent Orthanc thus ends an upload after about
    ``connect + answer`` seconds, and no upload sends for much longer than
    ``total``."""

    connect: float = 3.05
    answer: float = 30.0
    total: float = 600.0
    STORE_RATE = 10 * 1024**2  # bytes a second Orthanc parses and stores, at least
    FLOOR_RATE = 1024**2  # bytes a second a whole call moves, at least

    @classmethod
    def from_config(cls) -> Deadlines:
        c = current_app.config
        return cls(answer=float(c.get("UPLOAD_ORTHANC_TIMEOUT", cls.answer)),
                   total=float(c.get("UPLOAD_DEADLINE", cls.total)))

    def for_file(self, size: int) -> tuple[tuple[float, float], float]:
        """(connect, read) timeouts and the whole call's deadline, in seconds."""
        return (self.connect, self.answer + size / self.STORE_RATE), self.answer + size / self.FLOOR_RATE


def _upload(client: OrthancClient, f: IO[bytes], size: int, deadlines: Deadlines) -> object:
    """``POST /instances`` with this upload's deadlines: a person waiting
    for a page must not wait on a silent Orthanc as long as the client's
    default (300 s between two reads, no bound on the whole call)."""
    timeout, total = deadlines.for_file(size)
    return client.upload(cast(BinaryIO, f), timeout=timeout, total=total)


def _post(client: OrthancClient, member: archive.Member, report: Report, deadlines: Deadlines) -> None:
    try:
        answer = _upload(client, member.file, member.size, deadlines)
    except Unreachable as exc:  # TimedOut (silent or trickling), refused, TLS
        waited = deadlines.for_file(member.size)[0][1]
        text = f"Orthanc did not answer within {waited:.0f} s" if isinstance(exc, TimedOut) else str(exc).rstrip(".")
        report.outcomes.append(Outcome(member.name, "failed", text))
        report.aborted = (f"Orthanc stopped answering: {text}. Nothing after it was sent; upload again once "
                          "Orthanc answers (files stored now will show as already stored).")
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


NOT_SENT = "not sent: Orthanc stopped answering"


def process(server: OrthancServer, files: Iterable[tuple[str, IO[bytes]]]) -> Report:
    """Send every DICOM file found in ``files`` to ``server``.

    Orthanc stores several instances at once faster than one after another,
    so a few connections send in parallel; at most that many files (each a
    temporary file, never in memory) are in flight, and the outcome table
    keeps the order of the upload.

    Whatever goes wrong with one file (damaged, too large, Orthanc silent,
    or a fault of ours) ends as a line of the report, never as an exception:
    the files stored before it were stored, and the person must be told.
    Once Orthanc stops answering, or the upload passes its total deadline,
    nothing more is sent: each further wait would be as long.
    """
    report = Report()
    bounds = limits()
    budget = archive.Budget(bounds)
    deadlines = Deadlines.from_config()
    ends_at = time.monotonic() + deadlines.total
    stop = threading.Event()  # set once Orthanc failed to answer: queued files are not sent
    workers = max(1, int(current_app.config["UPLOAD_CONNECTIONS"]))
    # Clients are made here, in the app context; each sending thread takes one.
    clients = [client_for(server, timeout=(deadlines.connect, deadlines.answer)) for _worker in range(workers)]
    free: queue.SimpleQueue[OrthancClient] = queue.SimpleQueue()
    for c in clients:
        free.put(c)
    local = threading.local()

    def client() -> OrthancClient:
        if not hasattr(local, "client"):
            local.client = free.get()
        mine: OrthancClient = local.client
        return mine

    late = _("The upload was stopped after %(seconds)s s: Orthanc is storing slowly. The files listed were "
             "handled as shown; upload the rest again (files stored now will show as already stored).",
             seconds=f"{deadlines.total:.0f}")

    def refusal(name: str) -> tuple[Outcome, str] | None:
        """Why ``name`` may not be sent any more (its line, and the message
        for the whole upload), or None. Asked before a file is queued and
        again before it is sent."""
        if stop.is_set():
            return Outcome(name, "failed", NOT_SENT), ""
        if time.monotonic() > ends_at:
            return Outcome(name, "failed", f"not sent: the upload passed its {deadlines.total:.0f} s deadline"), late
        return None

    def send(member: archive.Member) -> Report:
        one = Report()
        try:
            refused = refusal(member.name)
            if refused:
                one.outcomes.append(refused[0])
                one.aborted = refused[1]
            else:
                _post(client(), member, one, deadlines)
                if one.aborted:
                    stop.set()
        except Exception:
            log.exception("upload: sending %s failed", member.name)
            one.outcomes.append(Outcome(member.name, "failed", "not sent: an error on this server (logged)"))
        finally:
            member.close()
        return one

    pending: list[Outcome | Future[Report]] = []  # in upload order
    in_flight: set[Future[Report]] = set()  # at most 2 x workers files waiting or being sent

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
            for name, stream in files:
                name = archive.display(name)
                walker = None
                try:
                    budget.take(0)  # every file picked counts against UPLOAD_MAX_FILES
                    walker = archive.walk(stream, name, bounds, budget)
                    for item in walker:
                        if isinstance(item, archive.Rejected):
                            pending.append(Outcome(item.name, "rejected", item.reason))
                            continue
                        refused = refusal(item.name)
                        if refused:
                            pending.append(refused[0])
                            report.aborted = report.aborted or refused[1]
                            item.close()
                            break
                        if len(in_flight) >= 2 * workers:
                            done, _pending = wait(in_flight, return_when=FIRST_COMPLETED)
                            in_flight.difference_update(done)
                        future = pool.submit(send, item)
                        in_flight.add(future)
                        pending.append(future)
                except archive.LimitExceeded as exc:
                    pending.append(Outcome(name, "failed", _("stopped: %(reason)s", reason=exc)))
                    report.aborted = _("The upload was stopped: %(reason)s.", reason=exc)
                    break
                except Exception:
                    log.exception("upload: reading %s failed", name)
                    pending.append(Outcome(name, "failed", "could not be read: an error on this server (logged)"))
                    report.aborted = _("The upload was stopped by an error on this server (logged); "
                                       "the files listed before it were handled as shown.")
                    break
                finally:
                    if walker is not None:
                        walker.close()  # an archive left half-read closes its temporary files now
                if stop.is_set() or report.aborted:
                    break
            for entry in pending:
                if isinstance(entry, Outcome):
                    report.outcomes.append(entry)
                    continue
                one = entry.result()  # send() never raises
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


def sync_and_link(server: OrthancServer, report: Report, request_id: int | None, user: User) -> list[OrthancStudy]:
    """Mirror the studies just stored now (not at the next tick) and, when
    asked, link them to the chosen request."""
    from sqlalchemy import select

    from ..extensions import db
    from ..orthanc import matching, sync

    if report.studies:
        from ..orthanc import servers

        sync.run(server.id, mode="auto", client_factory=servers.client_for_person)
    studies = list(db.session.scalars(select(OrthancStudy).where(
        OrthancStudy.server_id == server.id, OrthancStudy.orthanc_id.in_(report.studies))))
    if request_id:
        req = db.session.get(ImagingRequest, request_id)
        if req is not None:
            for study in studies:
                if not any(link.request_id == req.id for link in matching.requests_of(study)):
                    try:
                        matching.link(study, req, user)
                    except matching.LinkError as exc:
                        report.aborted = report.aborted or str(exc)
    return studies
