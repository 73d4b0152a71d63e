"""Mirror an Orthanc into our tables, one step at a time.

Each public function is one step that a test, the CLI, the API or the
worker thread can call alone:

- :func:`incremental` follows ``/changes`` page by page; the processed index
  is committed in the same transaction as the rows of its page, so a crash
  or an outage resumes exactly where it stopped;
- :func:`full` pages ``/studies?expand`` and ``/series?expand`` (never one
  request per study) and then removes what Orthanc no longer has;
- :func:`reconcile` finds deletions, which Orthanc 1.10.1 does not log;
- :func:`run` wraps them with the lease and the error bookkeeping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, or_, select, update

from ..extensions import db
from ..models import OrthancPatient, OrthancSeries, OrthancServer, OrthancStudy, Patient
from ..models._time import utcnow
from ..models.orthanc import name_key
from .client import NotFound, OrthancClient, OrthancError
from .servers import client_for

log = logging.getLogger(__name__)

STUDY_CHANGES = {"NewStudy", "StableStudy", "ModifiedStudy", "UpdatedMetadata", "UpdatedAttachment"}
SERIES_CHANGES = {"NewSeries", "StableSeries", "ModifiedSeries"}
CHANGES_PAGE = 100
LEASE_SECONDS = 120
MAX_BACKOFF = 600

# Receivers (request matching, worklist cleanup) are told about studies that
# were created or changed: ``study_synced.send(study, study=..., created=...)``.
from flask.signals import Namespace

study_synced = Namespace().signal("study-synced")


class LeaseLost(RuntimeError):
    """Our lease expired and another runner holds it: stop writing."""


@dataclass
class Summary:
    server: str
    mode: str
    requests: int = 0
    changes: int = 0
    pages: int = 0
    studies_updated: int = 0
    studies_deleted: int = 0
    patients_linked: int = 0
    last_change: int = 0
    reset_detected: bool = False
    skipped: str = ""
    error: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        if self.skipped:
            return f"{self.server}: skipped ({self.skipped})"
        if self.error:
            return f"{self.server}: {self.mode} sync failed: {self.error}"
        return (f"{self.server}: {self.mode} sync: {self.studies_updated} studies updated, "
                f"{self.studies_deleted} removed, {self.changes} changes, {self.requests} requests, "
                f"index {self.last_change}, {self.seconds:.2f}s"
                + (" (Orthanc database reset detected)" if self.reset_detected else ""))


# -- rows ---------------------------------------------------------------------

def _tags(data: dict[str, Any], key: str = "MainDicomTags") -> dict[str, str]:
    tags = data.get(key) or {}
    return {k: str(v) if v is not None else "" for k, v in tags.items()} if isinstance(tags, dict) else {}


def _cut(value: str, limit: int) -> str:
    return (value or "")[:limit]


def _accession(tags: dict[str, str]) -> str:
    """AccessionNumber is SH: leading and trailing spaces are not part of it."""
    return _cut(tags.get("AccessionNumber", "").strip(), 64)


class _Cache:
    """Rows a page of studies needs, loaded with three queries instead of
    three per study (the full sync of a large archive depends on it)."""

    def __init__(self, server_id: int, items: list[dict[str, Any]]):
        self.server_id = server_id
        ids = [d["ID"] for d in items]
        pids = list({_cut(_tags(d, "PatientMainDicomTags").get("PatientID", ""), 64) for d in items})
        self.studies = {st.orthanc_id: st for st in db.session.scalars(
            select(OrthancStudy).where(OrthancStudy.server_id == server_id, OrthancStudy.orthanc_id.in_(ids)))}
        self.patients = {p.patient_id: p for p in db.session.scalars(
            select(OrthancPatient).where(OrthancPatient.server_id == server_id, OrthancPatient.patient_id.in_(pids)))}
        self.locals = {p.puid: p for p in db.session.scalars(select(Patient).where(Patient.puid.in_(pids)))}


def _patient_row(cache: _Cache, orthanc_id: str, ptags: dict[str, str], generation: int) -> OrthancPatient:
    pid = _cut(ptags.get("PatientID", ""), 64)
    row = cache.patients.get(pid)
    if row is None:
        row = OrthancPatient(server_id=cache.server_id, patient_id=pid, orthanc_id=orthanc_id)
        db.session.add(row)
        cache.patients[pid] = row
    row.orthanc_id = orthanc_id
    row.name = _cut(ptags.get("PatientName", ""), 200)
    row.name_key = name_key(row.name)
    row.birth_date = _cut(ptags.get("PatientBirthDate", ""), 16)
    row.sex = _cut(ptags.get("PatientSex", ""), 16)
    row.seen_generation = generation
    auto_link(row, cache.locals.get(pid))  # the cache holds every local patient of the page
    return row


def auto_link(row: OrthancPatient, local: Patient | bool | None = False) -> bool:
    """Link to the local patient whose PUID equals the PatientID, unless staff
    linked or unlinked this patient by hand. ``local`` False means look it up."""
    if row.link_mode in ("manual", "unlinked") or not row.patient_id:
        return False
    if local is False:
        local = db.session.scalar(select(Patient).where(Patient.puid == row.patient_id))
    if local is None:
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


def upsert_study(server_id: int, data: dict[str, Any], series: list[dict[str, Any]] | None,
                 generation: int, cache: _Cache | None = None) -> tuple[OrthancStudy, bool]:
    """Create or update the row of one study from Orthanc's expanded JSON.

    ``series`` is the expanded series list; None keeps the series rows as they
    are (the full sync fills them from its own pages).
    """
    cache = cache or _Cache(server_id, [data])
    tags = _tags(data)
    ptags = _tags(data, "PatientMainDicomTags")
    uid = _cut(tags.get("StudyInstanceUID", ""), 64) or data["ID"]
    study = cache.studies.get(data["ID"])  # keyed as Orthanc keys it: PatientID + StudyInstanceUID
    created = study is None
    if created:
        study = OrthancStudy(server_id=server_id, study_uid=uid, orthanc_id=data["ID"])
        db.session.add(study)
        cache.studies[data["ID"]] = study
    study.study_uid = uid
    patient = _patient_row(cache, str(data.get("ParentPatient", "")), ptags, generation)
    study.orthanc_id = data["ID"]
    study.patient_row = patient
    study.patient_id = patient.patient_id
    study.patient_name = patient.name
    study.name_key = patient.name_key
    study.birth_date = patient.birth_date
    study.accession_number = _accession(tags)
    study.study_date = _cut(tags.get("StudyDate", ""), 8)
    study.study_time = _cut(tags.get("StudyTime", ""), 16)
    study.description = _cut(tags.get("StudyDescription", ""), 200)
    study.institution = _cut(tags.get("InstitutionName", ""), 200)
    study.referring_physician = _cut(tags.get("ReferringPhysicianName", ""), 200)
    study.stable = bool(data.get("IsStable", False))
    study.orthanc_last_update = _cut(str(data.get("LastUpdate", "")), 32)
    study.seen_generation = generation
    if created:
        study.series_count = len(data.get("Series") or [])
    if series is not None:
        _replace_series(study, series)
    return study, created


def _series_values(s: dict[str, Any]) -> dict[str, Any]:
    tags = _tags(s)
    try:
        number = int(tags.get("SeriesNumber", "").strip() or "x")
    except ValueError:
        number = None
    instances = s.get("Instances") or []
    return {
        "series_uid": _cut(tags.get("SeriesInstanceUID", ""), 64) or s["ID"], "orthanc_id": s["ID"],
        "number": number, "description": _cut(tags.get("SeriesDescription", ""), 200),
        "modality": _cut(tags.get("Modality", ""), 16), "instance_count": len(instances),
        "first_instance": instances[0] if instances else "",
    }


def _replace_series(study: OrthancStudy, series: list[dict[str, Any]]) -> None:
    existing = {s.series_uid: s for s in study.series}
    keep = set()
    for s in series:
        values = _series_values(s)
        row = existing.get(values["series_uid"])
        if row is None:
            row = OrthancSeries(**values)
            study.series.append(row)
        else:
            for k, v in values.items():
                setattr(row, k, v)
        keep.add(values["series_uid"])
    for uid, row in existing.items():
        if uid not in keep:
            study.series.remove(row)
    _summarise(study)


def _summarise(study: OrthancStudy) -> None:
    study.series_count = len(study.series)
    study.instance_count = sum(s.instance_count for s in study.series)
    mods = []
    for s in study.series:
        if s.modality and s.modality not in mods:
            mods.append(s.modality)
    study.modalities = _cut("\\".join(mods), 100)


def mark_shared_uids(uids: Iterable[str]) -> None:
    """Set ``uid_shared`` on every study (any server) whose UID is among
    ``uids``: true when another row has the UID under another PatientID.
    Newly shared studies that are already linked get a warning to check."""
    from sqlalchemy import exists as sql_exists

    t = OrthancStudy.__table__
    other = t.alias("other")
    for chunk in _chunks(sorted({u for u in uids if u}), 500):
        before = set(db.session.scalars(select(OrthancStudy.id).where(OrthancStudy.study_uid.in_(chunk),
                                                                      OrthancStudy.uid_shared.is_(True))))
        db.session.execute(update(t).where(t.c.study_uid.in_(chunk)).values(
            uid_shared=sql_exists().where(other.c.study_uid == t.c.study_uid,
                                          other.c.patient_id != t.c.patient_id))
            .execution_options(synchronize_session=False))
        now = set(db.session.scalars(select(OrthancStudy.id).where(OrthancStudy.study_uid.in_(chunk),
                                                                   OrthancStudy.uid_shared.is_(True))))
        if now - before:
            from .matching import flag_shared

            flag_shared(sorted(now - before))


def _delete_studies(server: OrthancServer, where) -> int:
    ids = list(db.session.scalars(select(OrthancStudy.id).where(OrthancStudy.server_id == server.id, where)))
    if not ids:
        return 0
    uids = set(db.session.scalars(select(OrthancStudy.study_uid).where(OrthancStudy.id.in_(ids))))
    from .matching import forget_studies

    _reoffer_list().extend(forget_studies(ids))  # their requests lose the link, with a record of why
    for chunk in _chunks(ids, 500):
        db.session.execute(delete(OrthancSeries).where(OrthancSeries.study_id.in_(chunk)))
        db.session.execute(delete(OrthancStudy).where(OrthancStudy.id.in_(chunk)))
    _drop_orphan_patients(server)
    mark_shared_uids(uids)
    return len(ids)


# Requests that lost their last study in this run (per thread: the worker
# and web requests sync at the same time); put back on the worklist once the
# deletion is committed (see run()).
_pending = threading.local()


def _reoffer_list() -> list:
    if not hasattr(_pending, "requests"):
        _pending.requests = []
    return _pending.requests


def _drop_orphan_patients(server: OrthancServer) -> None:
    """Orthanc patients without studies go; manual links go with them, since
    the patient no longer exists in Orthanc."""
    has_study = select(OrthancStudy.id).where(OrthancStudy.patient_row_id == OrthancPatient.id).exists()
    db.session.execute(delete(OrthancPatient).where(OrthancPatient.server_id == server.id, ~has_study)
                       .execution_options(synchronize_session=False))


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# -- steps --------------------------------------------------------------------

def _fetch_study(client: OrthancClient, orthanc_id: str) -> tuple[dict, list[dict]] | None:
    try:
        data = client.study(orthanc_id)
        series = client.study_series(orthanc_id)
    except NotFound:
        return None
    return data, series


def incremental(server: OrthancServer, client: OrthancClient, *, page_size: int = CHANGES_PAGE,
                renew: Callable[[], None] | None = None, max_pages: int | None = None) -> Summary:
    """Follow ``/changes`` from ``server.last_change`` until ``Done``.

    With nothing new this is one request. A ``Last`` below our index means
    Orthanc's database was replaced: the caller then runs :func:`full`.
    """
    summary = Summary(server.label, "incremental")
    start = client.request_count
    since = server.last_change
    generation = server.sync_generation
    while True:
        page = client.changes(since, page_size)
        last = int(page["Last"])
        changes = page["Changes"] or []
        if last < since:  # Orthanc's log restarted: its database was replaced
            summary.reset_detected = True
            break
        study_ids: list[str] = []
        series_ids: list[str] = []
        for ch in changes:
            kind, level, rid = ch.get("ChangeType"), ch.get("ResourceType"), ch.get("ID")
            if level == "Study" and kind in STUDY_CHANGES and rid not in study_ids:
                study_ids.append(rid)
            elif level == "Series" and kind in SERIES_CHANGES and rid not in series_ids:
                series_ids.append(rid)
        for sid in series_ids:  # a series added to a study we already have
            try:
                parent = client.series(sid).get("ParentStudy")
            except NotFound:
                continue
            if parent and parent not in study_ids:
                study_ids.append(parent)
        touched: list[tuple[OrthancStudy, bool]] = []
        for oid in study_ids:
            fetched = _fetch_study(client, oid)
            if fetched is None:
                summary.studies_deleted += _delete_studies(server, OrthancStudy.orthanc_id == oid)
                continue
            study, created = upsert_study(server.id, fetched[0], fetched[1], generation)
            db.session.flush()
            touched.append((study, created))
            summary.studies_updated += 1
            if renew and summary.studies_updated % 20 == 0:
                renew()  # a page of slow fetches must not outlive the lease
        db.session.flush()
        mark_shared_uids(study.study_uid for study, _ in touched)  # before matching reads it
        summary.changes += len(changes)
        summary.pages += 1
        if changes:
            since = max(since, last)
        server.last_change = since
        server.orthanc_last = max(last, since)
        db.session.commit()  # rows and index of this page, together
        for study, created in touched:  # matching runs on committed rows
            study_synced.send(study, study=study, created=created)
        if renew:
            renew()
        if page.get("Done", True) or not changes or (max_pages and summary.pages >= max_pages):
            break
    summary.last_change = server.last_change
    summary.requests = client.request_count - start
    return summary


def full(server: OrthancServer, client: OrthancClient, *, page_size: int = 500,
         renew: Callable[[], None] | None = None) -> Summary:
    """Read every study and series in pages and remove what is gone.

    The change index is read first, so changes made during the full sync are
    replayed by the next incremental sync (replaying is harmless). Each page
    is written with a few set-based statements (studies upserted on
    Orthanc's study id, which hashes PatientID and StudyInstanceUID; series
    on their UID) and committed, so time and memory do not grow per study.
    """
    summary = Summary(server.label, "full")
    server_id = server.id
    start = client.request_count
    last = client.last_change()
    generation = server.sync_generation + 1
    server.sync_generation = generation  # committed with the first page
    for items in _prefetched(client.iter_pages("studies", page_size)):
        summary.studies_updated += _write_study_page(server_id, items, generation)
        mark_shared_uids(_tags(d).get("StudyInstanceUID", "")[:64] or d["ID"] for d in items)
        db.session.commit()
        if renew:
            renew()
    for items in _prefetched(client.iter_pages("series", page_size)):
        _write_series_page(server_id, items, generation)
        db.session.commit()
        if renew:
            renew()
    _summarise_studies(server_id, generation)
    db.session.execute(delete(OrthancSeries).where(
        OrthancSeries.seen_generation != generation,
        OrthancSeries.study_id.in_(select(OrthancStudy.id).where(OrthancStudy.server_id == server_id,
                                                                 OrthancStudy.seen_generation == generation))))
    server = db.session.get(OrthancServer, server_id)
    summary.studies_deleted = _delete_studies(server, OrthancStudy.seen_generation != generation)
    server.last_change = last
    server.orthanc_last = last
    server.needs_full_sync = False
    server.last_full_sync_at = utcnow()
    server.last_reconcile_at = utcnow()
    db.session.commit()
    _announce(server_id, generation)
    summary.last_change = last
    summary.requests = client.request_count - start
    return summary


def _prefetched(pages: Iterable[Any]) -> Iterable[Any]:
    """Read the next page from Orthanc while this one is written: the HTTP
    wait and the database work overlap instead of adding up. One page ahead
    at most, so memory stays one page."""
    import queue

    box: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        box.put(page, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            box.put(exc)

    thread = threading.Thread(target=produce, name="orthanc-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _upsert(model, rows: list[dict[str, Any]], keys: list[str], update: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE for a batch, on SQLite and
    PostgreSQL alike."""
    if not rows:
        return
    from ..querytools import insert_for_upsert

    stmt = insert_for_upsert(model.__table__)  # Core, not the ORM's bulk path: a page is one executemany
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
    db.session.connection().execute(stmt, rows)


def _write_study_page(server_id: int, items: list[dict[str, Any]], generation: int) -> int:
    patients: dict[str, dict[str, Any]] = {}
    for data in items:
        ptags = _tags(data, "PatientMainDicomTags")
        pid = _cut(ptags.get("PatientID", ""), 64)
        patients[pid] = {"server_id": server_id, "patient_id": pid, "orthanc_id": str(data.get("ParentPatient", "")),
                         "name": _cut(ptags.get("PatientName", ""), 200),
                         "name_key": name_key(_cut(ptags.get("PatientName", ""), 200)),
                         "birth_date": _cut(ptags.get("PatientBirthDate", ""), 16),
                         "sex": _cut(ptags.get("PatientSex", ""), 16), "seen_generation": generation,
                         "local_patient_id": None, "link_mode": "", "updated_at": utcnow()}
    _upsert(OrthancPatient, list(patients.values()), ["server_id", "patient_id"],
            ["orthanc_id", "name", "name_key", "birth_date", "sex", "seen_generation", "updated_at"])
    rows = db.session.execute(select(OrthancPatient.id, OrthancPatient.patient_id, OrthancPatient.local_patient_id,
                                     OrthancPatient.link_mode)
                              .where(OrthancPatient.server_id == server_id,
                                     OrthancPatient.patient_id.in_(list(patients)))).all()
    locals_ = dict(db.session.execute(select(Patient.puid, Patient.id).where(Patient.puid.in_(list(patients)))).all())
    row_ids = {}
    relink = []
    for row_id, pid, local_id, mode in rows:
        row_ids[pid] = row_id
        if mode in ("manual", "unlinked") or not pid:
            continue
        want = locals_.get(pid)
        if want != local_id:
            relink.append({"b_id": row_id, "b_local": want, "b_mode": "auto" if want else ""})
    if relink:
        db.session.execute(update(OrthancPatient.__table__).where(OrthancPatient.__table__.c.id == bindparam("b_id"))
                           .values(local_patient_id=bindparam("b_local"), link_mode=bindparam("b_mode")), relink)
    studies = []
    for data in items:
        tags = _tags(data)
        ptags = _tags(data, "PatientMainDicomTags")
        pid = _cut(ptags.get("PatientID", ""), 64)
        studies.append({
            "server_id": server_id, "study_uid": _cut(tags.get("StudyInstanceUID", ""), 64) or data["ID"],
            "orthanc_id": data["ID"], "patient_row_id": row_ids.get(pid), "patient_id": pid,
            "patient_name": patients[pid]["name"], "name_key": patients[pid]["name_key"],
            "birth_date": patients[pid]["birth_date"], "accession_number": _accession(tags),
            "study_date": _cut(tags.get("StudyDate", ""), 8), "study_time": _cut(tags.get("StudyTime", ""), 16),
            "description": _cut(tags.get("StudyDescription", ""), 200),
            "institution": _cut(tags.get("InstitutionName", ""), 200),
            "referring_physician": _cut(tags.get("ReferringPhysicianName", ""), 200),
            "series_count": len(data.get("Series") or []), "instance_count": 0, "modalities": "",
            "stable": bool(data.get("IsStable", False)), "orthanc_last_update": _cut(str(data.get("LastUpdate", "")), 32),
            "seen_generation": generation, "synced_at": utcnow(),
        })
    _upsert(OrthancStudy, studies, ["server_id", "orthanc_id"],
            ["study_uid", "patient_row_id", "patient_id", "patient_name", "name_key", "birth_date",
             "accession_number", "study_date",
             "study_time", "description", "institution", "referring_physician", "stable", "orthanc_last_update",
             "seen_generation", "synced_at"])
    return len(studies)


def _write_series_page(server_id: int, items: list[dict[str, Any]], generation: int) -> None:
    parents = list({s.get("ParentStudy") for s in items})
    study_ids = dict(db.session.execute(select(OrthancStudy.orthanc_id, OrthancStudy.id).where(
        OrthancStudy.server_id == server_id, OrthancStudy.orthanc_id.in_(parents))).all())
    rows = []
    for s in items:
        study_id = study_ids.get(s.get("ParentStudy"))
        if study_id is None:
            continue  # arrived after the study pages: the next incremental sync has it
        rows.append({"study_id": study_id, "seen_generation": generation, **_series_values(s)})
    _upsert(OrthancSeries, rows, ["study_id", "series_uid"],
            ["orthanc_id", "number", "description", "modality", "instance_count", "first_instance", "seen_generation"])


def _summarise_studies(server_id: int, generation: int, chunk: int = 1000) -> None:
    """Series and instance counts and the modality list of every study of the
    sync, from its series rows, a chunk of studies at a time."""
    last_id = 0
    while True:
        ids = list(db.session.scalars(select(OrthancStudy.id).where(
            OrthancStudy.server_id == server_id, OrthancStudy.seen_generation == generation,
            OrthancStudy.id > last_id).order_by(OrthancStudy.id).limit(chunk)))
        if not ids:
            return
        agg: dict[int, list] = {i: [0, 0, []] for i in ids}
        for study_id, modality, count in db.session.execute(
                select(OrthancSeries.study_id, OrthancSeries.modality, OrthancSeries.instance_count)
                .where(OrthancSeries.study_id.in_(ids)).order_by(OrthancSeries.study_id, OrthancSeries.number,
                                                                  OrthancSeries.id)):
            a = agg[study_id]
            a[0] += 1
            a[1] += count
            if modality and modality not in a[2]:
                a[2].append(modality)
        t = OrthancStudy.__table__
        db.session.execute(update(t).where(t.c.id == bindparam("b_id")).values(
            series_count=bindparam("b_series"), instance_count=bindparam("b_instances"),
            modalities=bindparam("b_mods")),
            [{"b_id": i, "b_series": a[0], "b_instances": a[1], "b_mods": _cut("\\".join(a[2]), 100)}
             for i, a in agg.items()])
        db.session.commit()
        last_id = ids[-1]


def _announce(server_id: int, generation: int) -> None:
    """Match the studies of a full sync to their requests in a few set-based
    queries (one per rule), not one lookup per study: a full sync of a large
    archive must not cost a query per study for the few that match."""
    from .matching import match_generation

    match_generation(server_id, generation)


def reconcile(server: OrthancServer, client: OrthancClient, *, page_size: int = 1000,
              renew: Callable[[], None] | None = None) -> Summary:
    """Remove studies Orthanc no longer has (1.10.1 logs no deletions):
    page through ``GET /studies`` (ids only) and sweep what was not seen."""
    summary = Summary(server.label, "reconcile")
    start = client.request_count
    generation = server.sync_generation + 1
    missing: list[str] = []
    for ids in client.iter_pages("studies", page_size, expand=False):
        for chunk in _chunks(ids, 500):
            res = db.session.execute(update(OrthancStudy)
                                     .where(OrthancStudy.server_id == server.id, OrthancStudy.orthanc_id.in_(chunk))
                                     .values(seen_generation=generation)
                                     .execution_options(synchronize_session=False))
            if res.rowcount < len(chunk):
                missing.append(chunk[0])  # Orthanc has studies we lack: the incremental sync will add them
        if renew:
            renew()
    server.sync_generation = generation
    summary.studies_deleted = _delete_studies(server, OrthancStudy.seen_generation != generation)
    server.last_reconcile_at = utcnow()
    db.session.commit()
    if missing:
        # Orthanc holds studies we never saw: their changes were missed (a
        # database replaced and refilled past our index, or a cleared change
        # log). Read everything again on the next run.
        server.needs_full_sync = True
        db.session.commit()
        summary.notes.append("Orthanc has studies that are not mirrored yet; a full sync is scheduled")
    summary.requests = client.request_count - start
    return summary


# -- lease --------------------------------------------------------------------

def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(server_id: int, owner: str, seconds: int = LEASE_SECONDS) -> bool:
    """Take the server's lease if it is free, expired or already ours.

    One conditional UPDATE: atomic on PostgreSQL (row lock) and on SQLite
    (database write lock), so two runners can never both win.
    """
    now = utcnow()
    res = db.session.execute(
        update(OrthancServer)
        .where(OrthancServer.id == server_id,
               or_(OrthancServer.lease_owner.is_(None), OrthancServer.lease_until < now,
                   OrthancServer.lease_owner == owner))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False))
    db.session.commit()
    return res.rowcount == 1


def release_lease(server_id: int, owner: str) -> None:
    db.session.execute(update(OrthancServer)
                       .where(OrthancServer.id == server_id, OrthancServer.lease_owner == owner)
                       .values(lease_owner=None, lease_until=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()


# -- the whole thing, with bookkeeping -----------------------------------------

def backoff_seconds(failures: int) -> int:
    return min(MAX_BACKOFF, 5 * 2 ** max(0, failures - 1))


def run(server_id: int, *, mode: str = "auto", owner: str | None = None,
        client_factory: Callable[[OrthancServer], OrthancClient] | None = None,
        page_size: int = CHANGES_PAGE, progress: Callable[[str], None] | None = None) -> Summary:
    """Sync one server under its lease. ``mode``: ``auto`` (incremental, or
    full when needed or when Orthanc's database was reset), ``full`` or
    ``reconcile``. Errors are recorded on the server, never raised, and the
    server is never disabled: the next attempt waits with a growing backoff.
    """
    owner = owner or new_owner()
    server = db.session.get(OrthancServer, server_id)
    if server is None:
        raise LookupError(f"no Orthanc server {server_id}")
    label = server.label
    if not acquire_lease(server_id, owner):
        return Summary(label, mode, skipped="another sync of this server is running")
    t0 = time.perf_counter()
    summary = Summary(label, mode)
    try:
        server = db.session.get(OrthancServer, server_id)
        pages = [0]
        renewed = [time.monotonic()]

        def renew() -> None:
            # Renewing costs a commit: do it when a third of the lease is gone.
            pages[0] += 1
            if time.monotonic() - renewed[0] > LEASE_SECONDS / 3:
                if not acquire_lease(server_id, owner):
                    raise LeaseLost("another runner took over this server's sync (our lease expired)")
                renewed[0] = time.monotonic()
            if progress:
                progress(f"page {pages[0]} written")
        with (client_factory or client_for)(server) as client:
            if mode == "reconcile":
                summary = reconcile(server, client, renew=renew)
            elif mode == "full" or server.needs_full_sync:
                summary = full(server, client, renew=renew)
            else:
                summary = incremental(server, client, renew=renew, page_size=page_size)
                if summary.reset_detected:
                    server = db.session.get(OrthancServer, server_id)
                    requests_so_far = summary.requests
                    summary = full(server, client, renew=renew)
                    summary.reset_detected = True
                    summary.requests += requests_so_far
                    summary.mode = "full (after reset)"
        pending = _reoffer_list()
        if pending:
            from .matching import reoffer

            reoffer(list(pending))
            pending.clear()
        server = db.session.get(OrthancServer, server_id)
        server.last_sync_at = utcnow()
        server.failures = 0
        server.last_error = ""
        server.next_attempt_at = None
        db.session.commit()
    except Exception as exc:  # recorded, never raised: one server must not stop the others
        db.session.rollback()
        message = str(exc) if isinstance(exc, OrthancError) else f"{exc.__class__.__name__}: {exc}"
        if not isinstance(exc, OrthancError):
            log.exception("sync of Orthanc %s failed", label)
        else:
            log.warning("sync of Orthanc %s failed: %s", label, message)
        server = db.session.get(OrthancServer, server_id)
        if server is not None:
            server.failures += 1
            server.last_error = message[:2000]
            server.last_error_at = utcnow()
            server.next_attempt_at = utcnow() + timedelta(seconds=backoff_seconds(server.failures))
            db.session.commit()
        summary.error = message
    finally:
        try:
            release_lease(server_id, owner)
        except Exception:  # the lease expires on its own
            db.session.rollback()
    summary.seconds = time.perf_counter() - t0
    return summary
