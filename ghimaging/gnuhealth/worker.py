"""The background loop: pull when due, send the outbox soon after a change.

The thread carries the real application object and pushes its own app
context; each tick is ``tick()``, which tests call alone. A change wakes
the loop at once (``outbox.wake``), so a push leaves within a second or
two; otherwise it looks every few seconds for items whose retry is due.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from ..background import Slot
from ..extensions import db
from . import outbox, pull
from .settings import active_config

log = logging.getLogger(__name__)


def tick(pull_interval: int) -> dict[str, str]:
    """One pull (when due) and one outbox drain; lines for the log."""
    out: dict[str, str] = {}
    if active_config() is None:
        return out
    if pull.pull_due(pull_interval):
        summary = pull.run_pull()
        out["pull"] = summary.line()
        if summary.error:
            log.warning("GNU Health %s", summary.line())
        elif summary.imported or summary.problems:
            log.info("GNU Health %s", summary.line())
    drained = outbox.drain()
    if drained.sent or drained.failed or drained.retrying:
        out["outbox"] = drained.line()
        log.info("GNU Health %s", drained.line())
    return out


class GnuHealthWorker(threading.Thread):
    def __init__(self, app: Flask, *, interval: float = 5.0):
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
                    tick(pull_every)
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
