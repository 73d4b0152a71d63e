"""The two sync steps that read the whole archive.

- :func:`full` pages ``/studies?expand`` and ``/series?expand`` (never one
  request per study), writes each page set-based and removes what Orthanc no
  longer has;
- :func:`reconcile` finds deletions, which Orthanc 1.10.1 does not log, from
  the ids alone.

Each page goes to the runner's checkpoint (:class:`.summary.Pace`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, delete, select, update

from ..extensions import db
from ..models import OrthancSeries, OrthancServer, OrthancStudy
from ..models._time import utcnow
from . import bulk, mapping
from .client import OrthancClient
from .mirror import chunks, delete_studies, mark_shared_uids
from .summary import Batch, Pace, Summary

T = TypeVar("T")


def full(server: OrthancServer, client: OrthancClient, *, page_size: int = 500, pace: Pace | None = None) -> Summary:
    """Read every study and series in pages and remove what is gone.

    The change index is read first, so changes made during the full sync are
    replayed by the next incremental sync (replaying is harmless), and every
    row written is current at least up to it. Each page is written with a
    few set-based statements (studies upserted on Orthanc's study id, which
    hashes PatientID and StudyInstanceUID; series on their UID), so time and
    memory do not grow per study. The last checkpoint carries the sync's
    generation: the runner then matches its studies set-based.
    """
    pace = pace or Pace()
    summary = Summary(server.label, "full")
    server_id = server.id
    start = client.request_count
    last = client.last_change()
    generation = server.sync_generation + 1
    server.sync_generation = generation  # committed with the first page
    # One stream of pages, studies first: the first page of series is read
    # while the last page of studies is written.
    pages = chain(((True, p) for p in client.iter_pages("studies", page_size)),
                  ((False, p) for p in client.iter_pages("series", page_size)))
    for is_study, items in prefetched(pages):
        if is_study:
            summary.studies_updated += bulk.write_study_page(server_id, items, generation, last)
            mark_shared_uids(mapping.study_uid(d) for d in items)
        else:
            bulk.write_series_page(server_id, items, generation)
        pace.checkpoint(Batch())
    bulk.summarise_rest(server_id, generation)
    db.session.execute(delete(OrthancSeries).where(
        OrthancSeries.seen_generation != generation,
        OrthancSeries.study_id.in_(select(OrthancStudy.id).where(OrthancStudy.server_id == server_id,
                                                                 OrthancStudy.seen_generation == generation))))
    server = db.session.get_one(OrthancServer, server_id)
    summary.studies_deleted, bare = delete_studies(server, OrthancStudy.seen_generation != generation)
    server.last_change = last
    server.orthanc_last = last
    server.content_change = 0  # every study was read after every change up to ``last``
    server.needs_full_sync = False
    server.last_full_sync_at = utcnow()
    server.last_reconcile_at = utcnow()
    pace.checkpoint(Batch(reoffer=[req.id for req in bare], generation=generation))
    summary.last_change = last
    summary.requests = client.request_count - start
    return summary


def prefetched(pages: Iterable[T]) -> Iterator[T]:
    """Read the next pages from Orthanc while this one is written: the HTTP
    wait (and Orthanc's own work on the other core) and the database work
    overlap instead of adding up. Two pages ahead at most (one ahead left
    the writer waiting for pages about half its time, the bench showed), so
    memory holds three pages whatever the size of the archive."""
    box: queue.Queue[Any] = queue.Queue()
    ahead = threading.Semaphore(2)  # pages that may be read before the consumer takes them
    stop = threading.Event()
    done = object()

    def produce() -> None:
        source = iter(pages)
        try:
            while True:
                while not ahead.acquire(timeout=0.2):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                page = next(source, done)
                box.put(page)
                if page is done:
                    return
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
            ahead.release()  # taken: the next page may be read while this one is written
            yield cast(T, item)
    finally:
        stop.set()
        thread.join(timeout=5)


def reconcile(server: OrthancServer, client: OrthancClient, *, page_size: int = 1000,
              pace: Pace | None = None) -> Summary:
    """Remove studies Orthanc no longer has (1.10.1 logs no deletions):
    page through ``GET /studies`` (ids only) and sweep what was not seen."""
    pace = pace or Pace()
    summary = Summary(server.label, "reconcile")
    server_id = server.id
    start = client.request_count
    generation = server.sync_generation + 1
    missing: list[str] = []
    for ids in client.iter_pages("studies", page_size, expand=False):
        for chunk in chunks(ids, 500):
            res = cast(CursorResult[Any], db.session.execute(
                update(OrthancStudy).where(OrthancStudy.server_id == server_id, OrthancStudy.orthanc_id.in_(chunk))
                .values(seen_generation=generation).execution_options(synchronize_session=False)))
            if res.rowcount < len(chunk):
                missing.append(chunk[0])  # Orthanc has studies we lack: the incremental sync will add them
        pace.checkpoint(Batch())
    server = db.session.get_one(OrthancServer, server_id)
    server.sync_generation = generation
    summary.studies_deleted, bare = delete_studies(server, OrthancStudy.seen_generation != generation)
    server.last_reconcile_at = utcnow()
    if missing:
        # Orthanc holds studies we never saw: their changes were missed (a
        # database replaced and refilled past our index, or a cleared change
        # log). Read everything again on the next run.
        server.needs_full_sync = True
        summary.notes.append("Orthanc has studies that are not mirrored yet; a full sync is scheduled")
    pace.checkpoint(Batch(reoffer=[req.id for req in bare]))
    summary.requests = client.request_count - start
    return summary
