"""The background sync thread.

It carries the real application object and pushes its own app context. Each
tick asks every server whether a step is due and runs it under the server's
lease; the loop itself is trivial so that the steps can be tested alone.
Between ticks it waits on :data:`.wake.WOKEN`, so a wake taken by this
process runs a tick at once; a wake taken by another process or host is
seen in ``sync_wanted_at`` at the next tick.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import select

from ..background import Slot
from ..extensions import db
from ..models import OrthancServer
from ..models._time import utcnow
from . import sync, wake

log = logging.getLogger(__name__)


def due_mode(server: OrthancServer, now: datetime, sync_every: int, reconcile_every: int) -> str | None:
    """What this server needs now: 'auto', 'reconcile' or nothing.

    A wake (``sync_wanted_at``) asks for 'auto' before anything else. It
    cuts a failure's backoff once: a wake that came after the last failure
    gets one attempt at once (Orthanc just pushed, so it is probably back),
    an older one waits for the backoff like everything else, so a stream of
    pushes to a broken server costs one attempt per push, never a loop."""
    wanted = server.sync_wanted_at
    woken = wanted is not None and (server.last_error_at is None or wanted > server.last_error_at)
    if server.next_attempt_at and server.next_attempt_at > now and not woken:
        return None  # backing off after a failure
    if server.needs_full_sync or wanted is not None:
        return "auto"
    if reconcile_every and (server.last_reconcile_at is None
                            or server.last_reconcile_at + timedelta(seconds=reconcile_every) <= now):
        return "reconcile"
    if sync_every and (server.last_sync_at is None or server.last_sync_at + timedelta(seconds=sync_every) <= now):
        return "auto"
    if server.failures and sync_every:
        return "auto"  # backoff over: retry now
    return None


def tick(owner: str, sync_every: int, reconcile_every: int) -> list[sync.Summary]:
    """One pass over all servers; returns what ran. One failing server does
    not stop the others (``sync.run`` records errors instead of raising)."""
    now = utcnow()
    ran = []
    servers = list(db.session.scalars(select(OrthancServer).order_by(OrthancServer.id)))
    plan = [(s.id, due_mode(s, now, sync_every, reconcile_every), s.sync_wanted_at) for s in servers]
    db.session.commit()
    for server_id, mode, wanted in plan:
        if mode is None:
            continue
        summary = sync.run(server_id, mode=mode, owner=owner)
        if mode == "reconcile" and sync_every and not summary.error and not summary.skipped:
            ran.append(summary)
            summary = sync.run(server_id, mode="auto", owner=owner)
        if mode == "auto" and not summary.error and not summary.skipped:
            # The wish this sync answered, read before it started; a newer
            # one (a study stored after /changes was read) stays for the next tick.
            wake.clear_if_unchanged(server_id, wanted)
            db.session.commit()
        ran.append(summary)
        if summary.error:
            log.warning("%s", summary.line())
        elif not summary.skipped and (summary.studies_updated or summary.studies_deleted):
            log.info("%s", summary.line())
    return ran


class SyncWorker(threading.Thread):
    def __init__(self, app: Flask, *, interval: float = 5.0):
        super().__init__(name="ghimaging-orthanc-sync", daemon=True)
        self.app = app
        self.interval = interval
        self.stopping = threading.Event()
        self.owner = sync.new_owner()
        self.ticks = 0

    def run(self) -> None:
        sync_every = int(self.app.config["ORTHANC_SYNC_INTERVAL"])
        reconcile_every = int(self.app.config["ORTHANC_RECONCILE_INTERVAL"])
        if not sync_every and not reconcile_every:
            return
        while not self.stopping.is_set():
            wake.WOKEN.clear()  # a wake from here on runs another tick
            try:
                with self.app.app_context():
                    tick(self.owner, sync_every, reconcile_every)
                    db.session.remove()
            except Exception:  # never take the web process down
                log.exception("Orthanc sync tick failed; retrying")
            self.ticks += 1
            wake.WOKEN.wait(self.interval)  # a wake, a stop, or the interval

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        wake.WOKEN.set()
        self.join(timeout)


_slot: Slot[SyncWorker] = Slot()


def start(app: Flask) -> SyncWorker | None:
    """Start the process's sync thread once (``ghimaging serve`` and
    ``wsgi.py`` call this through ``background.start``; ``create_app``
    never does)."""
    if not app.config["ORTHANC_SYNC_INTERVAL"] and not app.config["ORTHANC_RECONCILE_INTERVAL"]:
        return None
    return _slot.start(lambda: SyncWorker(app))


def stop() -> None:
    _slot.stop()
