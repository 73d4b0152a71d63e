"""The worklist folder (Orthanc's ``Worklists.Database``): one
``<accession>.wl`` per live request, written atomically, and only files
that ghimaging wrote are ever removed."""

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
from ..models import ImagingRequest, RequestState, WorklistFile
from ..models._time import utcnow
from . import build_file

log = logging.getLogger(__name__)


def folder() -> Path:
    path = Path(current_app.config["WORKLIST_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def filename(req: ImagingRequest) -> str:
    return f"{req.accession_number}.wl"


def is_live(req: ImagingRequest) -> bool:
    """A request the modality should find: requested, images not yet in."""
    if req.state != RequestState.REQUESTED.value:
        return False
    return not getattr(req, "has_images", False)


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: Orthanc reads every *.wl
    on each C-FIND and must never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=".ghimaging-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write(req: ImagingRequest, *, commit: bool = True) -> bool:
    """Write the request's file if it is missing or different; True if written."""
    data = build_file(req).data
    digest = hashlib.sha256(data).hexdigest()
    name = filename(req)
    path = folder() / name
    row = db.session.scalar(select(WorklistFile).where(WorklistFile.filename == name))
    if row is not None and row.digest == digest and path.exists() and _digest(path) == digest:
        return False
    _atomic_write(path, data)
    if row is None:
        row = WorklistFile(filename=name, request_id=req.id, digest=digest)
        db.session.add(row)
    row.request_id, row.digest, row.written_at = req.id, digest, utcnow()
    if commit:
        db.session.commit()
    return True


def remove(req: ImagingRequest, *, commit: bool = True) -> bool:
    name = filename(req)
    row = db.session.scalar(select(WorklistFile).where(WorklistFile.filename == name))
    if row is None:
        return False  # not ours: never touched
    try:
        (folder() / name).unlink()
    except FileNotFoundError:
        pass
    db.session.delete(row)
    if commit:
        db.session.commit()
    return True


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
    what changed, remove files we wrote and no longer want, leave others."""
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
            if write(req, commit=False):
                report.written.append(name)
            else:
                report.unchanged += 1
        except Exception as exc:  # one bad template must not stop the rest
            report.errors.append(f"{name}: {exc}")
    for row in list(db.session.scalars(select(WorklistFile))):
        if row.filename not in wanted:
            try:
                (folder() / row.filename).unlink()
            except FileNotFoundError:
                pass
            db.session.delete(row)
            report.removed.append(row.filename)
    db.session.commit()
    ours = wanted | set(report.removed)
    report.foreign = sorted(p.name for p in folder().glob("*.wl") if p.name not in ours)
    return report
