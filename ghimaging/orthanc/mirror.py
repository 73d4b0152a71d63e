"""The mirror's rows, one study at a time: what the incremental sync and a
deletion write. Values come from :mod:`.mapping` (the full sync writes the
same values set-based, in :mod:`.bulk`). Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, bindparam, delete, distinct, func, select, update

from ..extensions import db
from ..models import ImagingRequest, OrthancPatient, OrthancSeries, OrthancServer, OrthancStudy, Patient
from . import mapping
from .linking import flag_shared, forget_studies

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def auto_link(row: OrthancPatient, local: Patient | bool | None = False) -> bool:
    """Link to the local patient whose PUID equals the PatientID, unless staff
    linked or unlinked this patient by hand. ``local`` False means look it up."""
    if row.link_mode in ("manual", "unlinked") or not row.patient_id:
        return False
    if local is False:
        local = db.session.scalar(select(Patient).where(Patient.puid == row.patient_id))
    if local is None or isinstance(local, bool):
        if row.link_mode == "auto":
            row.local_patient = None
            row.local_patient_id = None
            row.link_mode = ""
        return False
    if row.local_patient_id != local.id:
        row.local_patient = local
        row.link_mode = "auto"
        return True
    return False


class StudyCache:
    """Rows a page of studies needs, loaded with three queries instead of
    three per study."""

    def __init__(self, server_id: int, items: Iterable[dict[str, Any]]):
        items = list(items)
        self.server_id = server_id
        ids = [str(d["ID"]) for d in items]
        pids = list({mapping.patient_id(d) for d in items})
        self.studies = {st.orthanc_id: st for st in db.session.scalars(
            select(OrthancStudy).where(OrthancStudy.server_id == server_id, OrthancStudy.orthanc_id.in_(ids)))}
        self.patients = {p.patient_id: p for p in db.session.scalars(
            select(OrthancPatient).where(OrthancPatient.server_id == server_id, OrthancPatient.patient_id.in_(pids)))}
        self.locals = {p.puid: p for p in db.session.scalars(select(Patient).where(Patient.puid.in_(pids)))}


def _patient_row(cache: StudyCache, data: dict[str, Any], generation: int) -> OrthancPatient:
    values = mapping.patient_values(data)
    pid = values["patient_id"]
    row = cache.patients.get(pid)
    if row is None:
        row = OrthancPatient(server_id=cache.server_id, patient_id=pid, orthanc_id=values["orthanc_id"])
        db.session.add(row)
        cache.patients[pid] = row
    for key, value in values.items():
        setattr(row, key, value)
    row.seen_generation = generation
    auto_link(row, cache.locals.get(pid))  # the cache holds every local patient of the page
    return row


def upsert_study(server_id: int, data: dict[str, Any], series: list[dict[str, Any]] | None, generation: int,
                 cache: StudyCache | None = None, *, change: int = 0) -> tuple[OrthancStudy, bool]:
    """Create or update the row of one study from Orthanc's JSON.

    ``series`` is the expanded series list; None keeps the series rows as they
    are. ``change`` is the /changes index Orthanc had reached before it was
    read: the row is current up to there.
    """
    from ..models._time import utcnow

    cache = cache or StudyCache(server_id, [data])
    values = mapping.study_values(data)
    study = cache.studies.get(values["orthanc_id"])  # keyed as Orthanc keys it: PatientID + StudyInstanceUID
    created = study is None
    if study is None:
        study = OrthancStudy(server_id=server_id, study_uid=values["study_uid"], orthanc_id=values["orthanc_id"])
        db.session.add(study)
        cache.studies[values["orthanc_id"]] = study
        study.series_count = len(data.get("Series") or [])
    for key, value in values.items():
        setattr(study, key, value)
    study.patient_row = _patient_row(cache, data, generation)
    study.seen_generation = generation
    study.synced_change = change
    study.synced_at = utcnow()
    if series is not None:
        replace_series(study, series)
    return study, created


def replace_series(study: OrthancStudy, series: list[dict[str, Any]]) -> None:
    existing = {s.series_uid: s for s in study.series}
    keep = set()
    for s in series:
        values = mapping.series_values(s)
        row = existing.get(values["series_uid"])
        if row is None:
            study.series.append(OrthancSeries(**values))
        else:
            for k, v in values.items():
                setattr(row, k, v)
        keep.add(values["series_uid"])
    for uid, row in existing.items():
        if uid not in keep:
            study.series.remove(row)
    summarise(study)


def summarise(study: OrthancStudy) -> None:
    """The study's counts and modality list, from its series rows."""
    for key, value in mapping.summary_values((s.modality, s.instance_count) for s in study.series).items():
        setattr(study, key, value)


# The two statements every page of studies runs, built once: their UID
# lists are bound at execution (building an IN of 500 values anew cost more
# than SQLite's answer).
_SHARED = (select(OrthancStudy.study_uid).where(OrthancStudy.study_uid.in_(bindparam("uids", expanding=True)))
           .group_by(OrthancStudy.study_uid).having(func.count(distinct(OrthancStudy.patient_id)) > 1))
_CLEAR = (update(OrthancStudy).where(OrthancStudy.study_uid.in_(bindparam("uids", expanding=True)),
                                     OrthancStudy.uid_shared.is_(True))
          .values(uid_shared=False).execution_options(synchronize_session=False))


def mark_shared_uids(uids: Iterable[str]) -> None:
    """Set ``uid_shared`` on every study (any server) whose UID is among
    ``uids``: true when another row has the UID under another PatientID.
    Newly shared studies that are already linked get a warning to check.
    (One grouped read per 500 UIDs; rows are written only where the mark
    changes, so a page of ordinary studies costs one query.)"""
    for chunk in chunks(sorted({u for u in uids if u}), 500):
        shared = set(db.session.scalars(_SHARED, {"uids": list(chunk)}))
        cleared = [u for u in chunk if u not in shared]
        if cleared:
            db.session.execute(_CLEAR, {"uids": cleared})
        if not shared:
            continue
        newly = list(db.session.scalars(select(OrthancStudy.id).where(
            OrthancStudy.study_uid.in_(sorted(shared)), OrthancStudy.uid_shared.is_(False))))
        if newly:
            db.session.execute(update(OrthancStudy).where(OrthancStudy.id.in_(newly)).values(uid_shared=True)
                               .execution_options(synchronize_session=False))
            flag_shared(sorted(newly))


def delete_studies(server: OrthancServer, where: ColumnElement[bool]) -> tuple[int, list[ImagingRequest]]:
    """Remove the server's studies that match ``where`` with their series,
    links (recorded) and orphaned patients. Returns how many went and the
    requests left without a study, to offer again once this is committed."""
    ids = list(db.session.scalars(select(OrthancStudy.id).where(OrthancStudy.server_id == server.id, where)))
    if not ids:
        return 0, []
    uids = set(db.session.scalars(select(OrthancStudy.study_uid).where(OrthancStudy.id.in_(ids))))
    bare = forget_studies(ids)  # their requests lose the link, with a record of why
    for chunk in chunks(ids, 500):
        db.session.execute(delete(OrthancSeries).where(OrthancSeries.study_id.in_(chunk)))
        db.session.execute(delete(OrthancStudy).where(OrthancStudy.id.in_(chunk)))
    drop_orphan_patients(server)
    mark_shared_uids(uids)
    return len(ids), bare


def drop_orphan_patients(server: OrthancServer) -> None:
    """Orthanc patients without studies go; manual links go with them, since
    the patient no longer exists in Orthanc."""
    has_study = select(OrthancStudy.id).where(OrthancStudy.patient_row_id == OrthancPatient.id).exists()
    db.session.execute(delete(OrthancPatient).where(OrthancPatient.server_id == server.id, ~has_study)
                       .execution_options(synchronize_session=False))
