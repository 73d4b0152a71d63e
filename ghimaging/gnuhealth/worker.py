"""The GNU Health sync's steps, and the background loop that runs them.

Each step owns its transactions and commits them; the admin page's "Sync
now" and ``ghimaging gnuhealth sync`` run the same steps as the loop.

- :func:`pull_requests` imports GNU Health's requested requests, each in a
  transaction of its own: one that cannot be imported is rolled back and
  its problem committed instead, and never holds up the others.
- :func:`step` sends one outbox item. Its claim is committed before the
  first call to GNU Health, so no other process sends it meanwhile; and its
  outcome (sent, or the failure and the next try) is committed before the
  next item's first call. A crash therefore leaves at most one item whose
  outcome is lost; it goes again only after ``outbox.CLAIM_SECONDS``, and
  the push functions look up what they would create before creating it,
  so it is never sent twice. Keep that order: it guards patient data.

The loop's thread carries the real application object and pushes its own
app context; each tick is :func:`tick`, which tests call alone. A change
wakes the loop at once (``outbox.wake``), so a push leaves within a second
or two; otherwise it looks every few seconds for items whose retry is due.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from .. import crypto
from ..background import Slot
from ..extensions import db
from ..models import GnuHealthConfig, OutboxItem
from ..models._time import utcnow
from . import outbox, pull
from .client import GnuHealthClient, GnuHealthError
from .outbox import DrainSummary
from .pull import ImportProblem, PullSummary
from .remote import Remote
from .settings import SettingsError, active_config, client_for

log = logging.getLogger(__name__)


# -- pull -----------------------------------------------------------------------------

def pull_requests(client: GnuHealthClient) -> PullSummary:
    """Import GNU Health's requests in ``requested`` not imported yet, one
    transaction each; then report imported ones deleted or closed there."""
    remote = Remote(client)
    summary = PullSummary()
    for row in pull.requested_rows(remote, summary):
        if pull.link_if_ours(row):
            db.session.commit()
            continue
        try:
            req = pull.import_request(remote, row)
            db.session.commit()
        except ImportProblem as exc:
            db.session.rollback()
            db.session.expire_all()
            pull.record_problem(int(row["id"]), str(row.get("request") or ""), str(exc))
            db.session.commit()
            summary.problems.append(str(exc))
            continue
        summary.imported.append(req.accession_number)
    summary.problems.extend(pull.check_imported(remote))
    db.session.commit()
    return summary


def run_pull(*, total: float | None = None) -> PullSummary:
    """One pull with the saved settings; its outcome is recorded. ``total``
    bounds the whole pull (a page's "Sync now"); what it did not reach is
    left for the background loop's next pull."""
    cfg = active_config()
    if cfg is None:
        return PullSummary(error="GNU Health sync is off or not configured.")
    try:
        with client_for(cfg, total=total) as client:
            summary = pull_requests(client)
    except GnuHealthError as exc:
        db.session.rollback()
        summary = PullSummary(error=str(exc))
    pull.record_pull(summary)
    db.session.commit()
    return summary


# -- outbox ---------------------------------------------------------------------------

def step(client: GnuHealthClient | None = None, summary: DrainSummary | None = None) -> bool:
    """Send the oldest due item that is not waiting for another; False when
    there is none. Commits the claim, then the outcome (see the module)."""
    cfg = active_config()
    if cfg is None:
        return False
    now = utcnow()
    for item in outbox.due(now):
        if outbox.blocked(item):
            continue
        claimed = outbox.claim(item, now)
        db.session.commit()  # seen by every other process before anything is sent
        if not claimed:
            continue  # another process took it
        _send(item, cfg, client, summary or DrainSummary())
        return True
    return False


def _send(item: OutboxItem, cfg: GnuHealthConfig, client: GnuHealthClient | None, summary: DrainSummary) -> None:
    item_id = item.id
    own = client is None
    try:
        if client is None:
            client = client_for(cfg)
        outbox.send(item, Remote(client), cfg)
    except Exception as exc:  # recorded on the item: a bug must not hide it for ever
        db.session.rollback()
        if not isinstance(exc, (GnuHealthError, SettingsError, crypto.CredentialError, OSError)):
            log.exception("GNU Health push %s failed unexpectedly", item_id)
        failed = db.session.get(OutboxItem, item_id)
        if failed is not None:
            outbox.record_failure(failed, exc, summary)
    else:
        outbox.record_sent(item, summary)
    finally:
        if own and client is not None:
            client.close()
    db.session.commit()  # the outcome, before the next item's first call to GNU Health


def drain(limit: int = 1000) -> DrainSummary:
    """Send every due item (one login for all); stops early when GNU Health
    cannot be reached, leaving the rest for their next try."""
    summary = DrainSummary()
    cfg = active_config()
    if cfg is None:
        return summary
    try:
        client = client_for(cfg)
    except crypto.CredentialError as exc:
        summary.errors.append(str(exc))
        return summary
    with client:
        for _ in range(limit):
            if not step(client, summary) or summary.unreachable:
                break
    return summary


# -- the loop -------------------------------------------------------------------------

def tick(pull_interval: int) -> dict[str, str]:
    """One pull (when due) and one outbox drain; lines for the log."""
    out: dict[str, str] = {}
    if active_config() is None:
        return out
    due = pull.pull_due(pull_interval)
    db.session.commit()  # the claim of the pull, seen by the other processes at once
    if due:
        summary = run_pull()
        out["pull"] = summary.line()
        if summary.error:
            log.warning("GNU Health %s", summary.line())
        elif summary.imported or summary.problems:
            log.info("GNU Health %s", summary.line())
    drained = drain()
    if drained.sent or drained.failed or drained.retrying:
        out["outbox"] = drained.line()
        log.info("GNU Health %s", drained.line())
    return out


class GnuHealthWorker(threading.Thread):
    def __init__(self, app: Flask, *, interval: float = 5.0) -> None:
        super().__init__(name="ghimaging-gnuhealth-sync", daemon=True)
        self.app = app
        self.interval = interval
        self.stopping = threading.Event()
        self.ticks = 0

    def run(self) -> None:
        pull_every = int(self.app.config["GNUHEALTH_PULL_INTERVAL"])
        while not self.stopping.is_set():
            outbox.wake.clear()
            try:
                with self.app.app_context():
                    try:
                        tick(pull_every)
                    finally:
                        db.session.remove()
            except Exception:  # never take the web process down
                log.exception("GNU Health sync tick failed; retrying")
            self.ticks += 1
            outbox.wake.wait(self.interval)
            self.stopping.wait(0.5)  # changes in a burst go out together

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        outbox.wake.set()
        self.join(timeout)


_slot: Slot[GnuHealthWorker] = Slot()


def start(app: Flask) -> GnuHealthWorker:
    """Start the process's GNU Health thread once (``ghimaging serve`` and
    ``wsgi.py`` call this through ``background.start``; ``create_app``
    never does). It idles while the sync is off."""
    return _slot.start(lambda: GnuHealthWorker(app))


def stop() -> None:
    _slot.stop()
