"""The incremental sync step: follow Orthanc's ``/changes`` page by page.

Each page is read, the studies it names are fetched, their rows written and
the page handed to the runner's checkpoint together with the new index, so a
crash or an outage resumes exactly where it stopped.

**What a study costs.** A study is read with two requests, ``GET
/studies/{id}`` and ``GET /studies/{id}/series?expand`` (every series, with
its instance ids, in one answer), at most once per page. A series change
needs no request of its own when this run already read the series, or the
mirror knows its study; only a series never seen is looked up (``GET
/series/{id}``, once, for its study). So a new or changed study costs at most
three requests whatever its number of series.

**Stable* changes of unchanged studies cost nothing.** Orthanc logs
StableSeries, StableStudy and StablePatient some time after the last
instance of a burst arrived; they announce no new content, only that the
burst is over. Every new instance is logged as NewInstance (with its
NewSeries/NewStudy) before its Stable* change. So a study's row is known
current at a Stable* change when it was read after every NewInstance that
could be the study's. We keep two indexes: the study's ``synced_change``
(Orthanc had reached at least this index when the study was read: the page's
last index, since pages are read before studies) and the server's
``content_change``, the last index of a change we could not place: a
NewInstance whose id no read of this run saw (an instance added to a series
we did not re-read), or any other change that may alter a study without
naming it. A Stable* change at index N needs no request when the study's
``synced_change`` is at least the last unplaced change before N; otherwise
the study is read again. This is sound: an instance added after our read is
logged after it, so with an index above ``synced_change``, and its id was
not in our read, so it is unplaced and forces the read. (Deletions are not
logged by Orthanc 1.10.1; reconciliation finds deleted studies, as before.)
The study's row then only takes ``stable`` from the StableStudy change, and
the study is matched again like every study a page names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from ..extensions import db
from ..models import OrthancSeries, OrthancServer, OrthancStudy
from .client import NotFound, OrthancClient
from .mirror import StudyCache, delete_studies, mark_shared_uids, upsert_study
from .summary import Batch, Pace, Summary

CHANGES_PAGE = 100
STABLE = {"StableStudy", "StableSeries", "StablePatient"}
# Instance changes that alter nothing we mirror (Orthanc's own attachments
# and metadata of one instance).
INSTANCE_NOISE = {"UpdatedAttachment", "UpdatedMetadata"}

Json = dict[str, Any]


@dataclass
class _Seen:
    """What the reads of this run saw: studies (with the index their read is
    current at), series (with their study) and instance ids."""

    studies: dict[str, int] = field(default_factory=dict)
    series: dict[str, str] = field(default_factory=dict)
    instances: set[str] = field(default_factory=set)


@dataclass
class _Page:
    seq_last: int
    read: dict[str, tuple[Json, list[Json]] | None] = field(default_factory=dict)
    stable: dict[str, bool] = field(default_factory=dict)  # study id -> a StableStudy said it is stable
    unplaced: list[int] = field(default_factory=list)


def _read(client: OrthancClient, oid: str, page: _Page, seen: _Seen, pace: Pace) -> None:
    """Read one study and its expanded series (two requests), once a page."""
    if oid in page.read:
        return
    try:
        data = client.study(oid)
        series = client.get_json(f"/studies/{oid}/series", expand="")
    except NotFound:
        page.read[oid] = None
        return
    page.read[oid] = (data, series)
    seen.studies[oid] = page.seq_last
    for s in series:
        seen.series[str(s["ID"])] = oid
        seen.instances.update(s.get("Instances") or [])
    if len(page.read) % 20 == 0:
        pace.keepalive()  # a page of slow reads must not outlive the lease


def _parent(client: OrthancClient, sid: str, seen: _Seen, known: dict[str, str]) -> str | None:
    """The study of a series: from this run's reads, the mirror, or Orthanc."""
    oid = seen.series.get(sid) or known.get(sid)
    if oid:
        return oid
    try:
        oid = str(client.series(sid).get("ParentStudy") or "")
    except NotFound:
        return None
    if oid:
        seen.series[sid] = oid
    return oid or None


def _read_page(server: OrthancServer, client: OrthancClient, changes: list[Json], page: _Page, seen: _Seen,
               pace: Pace) -> None:
    """Decide what to read for one page of changes, and read it."""
    fetch: list[str] = []
    hints: list[tuple[str, str]] = []   # (kind, series id)
    stable: list[tuple[int, str, str]] = []   # (index, level, id)
    new_instances: list[tuple[int, str]] = []
    for ch in changes:
        kind, level, rid, seq = ch.get("ChangeType"), ch.get("ResourceType"), str(ch.get("ID")), int(ch.get("Seq", 0))
        if kind in STABLE:
            if level in ("Study", "Series"):
                stable.append((seq, str(level), rid))
        elif level == "Study":
            if not (kind == "NewStudy" and rid in seen.studies) and rid not in fetch:
                fetch.append(rid)  # NewStudy of a study this run read is placed
        elif level == "Series":
            hints.append((str(kind), rid))
        elif level == "Instance":
            if kind == "NewInstance":
                new_instances.append((seq, rid))
            elif kind not in INSTANCE_NOISE:
                page.unplaced.append(seq)
        # A patient's changes come with its first instance's (placed with it)
        # or concern what we do not mirror.
    sids = {sid for _, sid in hints} | {rid for _, level, rid in stable if level == "Series"}
    known = dict(db.session.execute(select(OrthancSeries.orthanc_id, OrthancStudy.orthanc_id)
                                    .join(OrthancSeries.study)
                                    .where(OrthancStudy.server_id == server.id,
                                           OrthancSeries.orthanc_id.in_(sorted(sids)))).all()) if sids else {}
    for oid in fetch:
        _read(client, oid, page, seen, pace)
    for kind, sid in hints:
        if kind == "NewSeries" and sid in seen.series:
            continue  # a read of this run has it
        parent = _parent(client, sid, seen, known)
        if parent and parent not in page.read:
            _read(client, parent, page, seen, pace)  # read after this change: it covers it
    early = sorted(seq for seq, iid in new_instances if iid not in seen.instances) + page.unplaced
    floor = server.content_change
    targets = [(seq, level, rid if level == "Study" else _parent(client, rid, seen, known))
               for seq, level, rid in stable]
    wanted = sorted({oid for _, _, oid in targets if oid and oid not in seen.studies})
    synced = dict(db.session.execute(select(OrthancStudy.orthanc_id, OrthancStudy.synced_change).where(
        OrthancStudy.server_id == server.id, OrthancStudy.orthanc_id.in_(wanted))).all()) if wanted else {}
    for seq, level, target in targets:
        if not target or target in page.read:
            continue
        oid = target
        current = seen.studies.get(oid, synced.get(oid))
        if current is not None and current >= max([floor, *(u for u in early if u < seq)]):
            page.stable[oid] = page.stable.get(oid, False) or level == "Study"
            continue  # nothing new since our read: no request
        _read(client, oid, page, seen, pace)
    page.unplaced += [seq for seq, iid in new_instances if iid not in seen.instances]


def _write_page(server: OrthancServer, page: _Page, summary: Summary) -> Batch:
    batch = Batch()
    items = [item for item in page.read.values() if item is not None]
    cache = StudyCache(server.id, [data for data, _ in items])
    written: list[OrthancStudy] = []
    for oid, item in page.read.items():
        if item is None:  # gone before we could read it
            deleted, bare = delete_studies(server, OrthancStudy.orthanc_id == oid)
            summary.studies_deleted += deleted
            batch.reoffer += [req.id for req in bare]
            continue
        study, _ = upsert_study(server.id, item[0], item[1], server.sync_generation, cache, change=page.seq_last)
        written.append(study)
    db.session.flush()
    summary.studies_updated += len(written)
    mark_shared_uids(study.study_uid for study in written)  # before matching reads it
    skipped = [oid for oid in page.stable if oid not in page.read]
    if skipped:
        now_stable = [oid for oid in skipped if page.stable[oid]]
        if now_stable:
            db.session.execute(update(OrthancStudy).where(
                OrthancStudy.server_id == server.id, OrthancStudy.orthanc_id.in_(now_stable)).values(stable=True)
                .execution_options(synchronize_session=False))
        batch.touched += list(db.session.scalars(select(OrthancStudy.id).where(
            OrthancStudy.server_id == server.id, OrthancStudy.orthanc_id.in_(skipped))))
    batch.touched = [study.id for study in written] + batch.touched
    if page.unplaced:
        server.content_change = max(server.content_change, *page.unplaced)
    return batch


def incremental(server: OrthancServer, client: OrthancClient, *, page_size: int = CHANGES_PAGE,
                pace: Pace | None = None, max_pages: int | None = None) -> Summary:
    """Follow ``/changes`` from ``server.last_change`` until ``Done``.

    With nothing new this is one request. A ``Last`` below our index means
    Orthanc's database was replaced: the caller then runs the full sync.
    """
    pace = pace or Pace()
    summary = Summary(server.label, "incremental")
    start = client.request_count
    seen = _Seen()
    while True:
        since = server.last_change
        answer = client.changes(since, page_size)
        last = int(answer["Last"])
        changes = answer["Changes"] or []
        if last < since:  # Orthanc's log restarted: its database was replaced
            summary.reset_detected = True
            break
        page = _Page(seq_last=last)
        _read_page(server, client, changes, page, seen, pace)
        batch = _write_page(server, page, summary)
        summary.changes += len(changes)
        summary.pages += 1
        if changes:
            server.last_change = max(since, last)
        server.orthanc_last = max(last, server.last_change)
        pace.checkpoint(batch)  # rows and index of this page, together
        if answer.get("Done", True) or not changes or (max_pages and summary.pages >= max_pages):
            break
    summary.last_change = server.last_change
    summary.requests = client.request_count - start
    return summary
