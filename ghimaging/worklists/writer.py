"""The worklist folder (Orthanc's ``Worklists.Database``): one
``<accession>.wl`` per live request, written atomically, and only files
that ghimaging wrote are ever removed.

Nothing here commits. A file is written (or removed) before the commit of
the transaction that wants it, so a request is never stored as offered
without its file; if that transaction rolls back or ends without a commit,
the folder is put back as it was (:mod:`ghimaging.imaging.effects`): the
file's previous bytes again, or no file. The page, API call, command or
background step that called commits once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import ImagingRequest, RequestEvent, RequestState, WorklistFile
from ..models._time import utcnow
from . import WorklistFileData, build_file

log = logging.getLogger(__name__)


def folder() -> Path:
    path = Path(current_app.config["WORKLIST_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def filename(req: ImagingRequest) -> str:
    return f"{req.accession_number}.wl"


def is_live(req: ImagingRequest) -> bool:
    """A request the modality should find: requested, images not yet in,
    not reported (a preliminary result leaves the request requested, but
    the exam was done: offering it again would invite a second one)."""
    if req.state != RequestState.REQUESTED.value or req.result is not None:
        return False
    return not getattr(req, "has_images", False)


def _undo_unless_committed(path: Path) -> None:
    """Put ``path`` back as it is now if the open transaction does not commit."""
    from ..imaging import effects

    try:
        before: bytes | None = path.read_bytes()
    except FileNotFoundError:
        before = None

    def restore() -> None:
        try:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                _atomic_write(path, before, undo=False)
        except OSError:
            log.exception("worklist file %s could not be put back after a rollback", path.name)

    effects.undo_unless_committed(restore)


def _atomic_write(path: Path, data: bytes, *, undo: bool = True) -> None:
    """Temp file in the same folder, fsync, rename: Orthanc reads every *.wl
    on each C-FIND and must never see half a file."""
    if undo:
        _undo_unless_committed(path)
    fd, tmp = tempfile.mkstemp(prefix=".ghimaging-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(req: ImagingRequest) -> bool:
    """Write the request's file if it is missing or different; True if written.

    When the item cannot be built (a value its character set cannot hold, a
    broken template), the old file is removed rather than left with values
    the register no longer has, the reason is recorded on the request, and
    the error is raised."""
    try:
        data = build_file(req)
    except Exception as exc:
        record_missing(req, str(exc))
        raise
    return put(req, data)


def put(req: ImagingRequest, data: WorklistFileData) -> bool:
    """Write already built bytes (the submit builds them before it changes
    the state); True if the file changed."""
    digest = hashlib.sha256(data.data).hexdigest()
    name = filename(req)
    path = folder() / name
    req.worklist_charset = data.charset
    req.worklist_problem = ""
    row = db.session.scalar(select(WorklistFile).where(WorklistFile.filename == name))
    if row is not None and row.digest == digest and path.exists() and _digest(path) == digest:
        return False
    _atomic_write(path, data.data)
    if row is None:
        row = WorklistFile(filename=name, request_id=req.id, digest=digest)
        db.session.add(row)
    row.request_id, row.digest, row.written_at = req.id, digest, utcnow()
    db.session.flush()
    return True


def record_missing(req: ImagingRequest, reason: str) -> None:
    """The file cannot be written: take the stale one away (a modality must
    not see values the register no longer has) and keep the reason on the
    request, once in its history."""
    reason = f"The worklist file could not be written: {reason}"
    _unlink_ours(req)
    if req.worklist_problem != reason:
        req.worklist_problem = reason
        req.events.append(RequestEvent(action="worklist", from_state=req.state, to_state=req.state,
                                       note=reason))


def _unlink_ours(req: ImagingRequest) -> bool:
    name = filename(req)
    row = db.session.scalar(select(WorklistFile).where(WorklistFile.filename == name))
    if row is None:
        return False  # not ours: never touched
    _unlink(folder() / name)
    db.session.delete(row)
    return True


def _unlink(path: Path) -> None:
    _undo_unless_committed(path)
    path.unlink(missing_ok=True)


def remove(req: ImagingRequest) -> bool:
    """Withdraw the request's item (only a file ghimaging wrote); True if
    there was one."""
    removed = _unlink_ours(req)
    if req.worklist_problem:
        req.worklist_problem = ""  # not offered any more: nothing is missing
    db.session.flush()
    return removed


def sync(req: ImagingRequest) -> None:
    """Bring the request's file in step with its state; never raises for a
    file that cannot be written or built (the reason a file is missing is
    recorded on the request instead, for the caller's commit)."""
    try:
        if is_live(req):
            write(req)
        else:
            remove(req)
    except Exception:
        log.exception("worklist file for request %s could not be updated", req.accession_number)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class RebuildReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def rebuild() -> RebuildReport:
    """Make the folder match the database: write what is missing, rewrite
    what changed, remove files we wrote and no longer want, leave others.
    The caller commits (and the folder goes back if it does not)."""
    report = RebuildReport()
    wanted: set[str] = set()
    live = db.session.scalars(select(ImagingRequest).where(ImagingRequest.state == RequestState.REQUESTED.value)
                              .order_by(ImagingRequest.id))
    for req in live:
        if not is_live(req):
            continue
        name = filename(req)
        wanted.add(name)
        try:
            if write(req):
                report.written.append(name)
            else:
                report.unchanged += 1
        except Exception as exc:  # one bad template must not stop the rest
            report.errors.append(f"{name}: {exc}")
    for row in list(db.session.scalars(select(WorklistFile))):
        if row.filename not in wanted:
            _unlink(folder() / row.filename)
            db.session.delete(row)
            report.removed.append(row.filename)
    db.session.flush()
    ours = wanted | set(report.removed)
    report.foreign = sorted(p.name for p in folder().glob("*.wl") if p.name not in ours)
    return report
