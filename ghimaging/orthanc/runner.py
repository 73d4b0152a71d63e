"""Run a sync step under the server's lease, with the bookkeeping: the one
place where a sync's transactions end.

After each page a step hands its :class:`.summary.Batch` to the checkpoint
here, which commits the page, then matches the studies the page touched to
their requests (on committed rows; a failure there never stops the sync),
puts the requests that lost their last study back on the worklist, commits
that, and renews the lease. Everything the runner does with the results
comes from the steps' return values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from ..extensions import db
from ..models import ImagingRequest, OrthancServer, OrthancStudy
from ..models._time import utcnow
from .client import OrthancClient, OrthancError
from .full import full, reconcile
from .incremental import CHANGES_PAGE, incremental
from .lease import LEASE_SECONDS, LeaseLost, acquire_lease, new_owner, release_lease
from .linking import match_generation, match_study, reoffer
from .servers import client_for
from .summary import Batch, Pace, Summary

log = logging.getLogger(__name__)

MAX_BACKOFF = 600


def backoff_seconds(failures: int) -> int:
    return int(min(MAX_BACKOFF, 5 * 2 ** max(0, failures - 1)))


class _Pacer:
    """The checkpoint and keepalive the steps call (see the module docstring)."""

    def __init__(self, server_id: int, owner: str, progress: Callable[[str], None] | None):
        self.server_id, self.owner, self.progress = server_id, owner, progress
        self.pages = 0
        self.renewed = time.monotonic()

    def checkpoint(self, batch: Batch) -> None:
        db.session.commit()
        for study_id in batch.touched:
            try:
                study = db.session.get(OrthancStudy, study_id)
                if study is not None:
                    match_study(study)
                db.session.commit()
            except Exception:  # matching must never stop the sync
                db.session.rollback()
                log.exception("matching study %s failed", study_id)
        if batch.generation:
            match_generation(self.server_id, batch.generation)
            db.session.commit()
        if batch.reoffer:
            reoffer([req for rid in batch.reoffer if (req := db.session.get(ImagingRequest, rid)) is not None])
            db.session.commit()
        self.pages += 1
        self.keepalive()
        if self.progress:
            self.progress(f"page {self.pages} written")

    def keepalive(self) -> None:
        """Renewing costs a commit: done when a third of the lease is gone."""
        if time.monotonic() - self.renewed > LEASE_SECONDS / 3:
            if not acquire_lease(self.server_id, self.owner):
                raise LeaseLost("another runner took over this server's sync (our lease expired)")
            self.renewed = time.monotonic()


def _step(server: OrthancServer, client: OrthancClient, mode: str, pace: Pace, page_size: int) -> Summary:
    if mode == "reconcile":
        return reconcile(server, client, pace=pace)
    if mode == "full" or server.needs_full_sync:
        return full(server, client, pace=pace)
    summary = incremental(server, client, pace=pace, page_size=page_size)
    if summary.reset_detected:
        server = db.session.get_one(OrthancServer, server.id)
        requests_so_far = summary.requests
        summary = full(server, client, pace=pace)
        summary.reset_detected = True
        summary.requests += requests_so_far
        summary.mode = "full (after reset)"
    return summary


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
    pacer = _Pacer(server_id, owner, progress)
    try:
        server = db.session.get_one(OrthancServer, server_id)
        with (client_factory or client_for)(server) as client:
            summary = _step(server, client, mode, Pace(pacer.checkpoint, pacer.keepalive), page_size)
        server = db.session.get_one(OrthancServer, server_id)
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
        failed = db.session.get(OrthancServer, server_id)
        if failed is not None:
            failed.failures += 1
            failed.last_error = message[:2000]
            failed.last_error_at = utcnow()
            failed.next_attempt_at = utcnow() + timedelta(seconds=backoff_seconds(failed.failures))
            db.session.commit()
        summary.error = message
    finally:
        try:
            release_lease(server_id, owner)
        except Exception:  # the lease expires on its own
            db.session.rollback()
    summary.seconds = time.perf_counter() - t0
    return summary
