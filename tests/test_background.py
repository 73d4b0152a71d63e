"""A serving process starts its background threads in one place: the
Orthanc sync and the GNU Health loop (which idles while that sync is off)."""

from __future__ import annotations

import threading

from ghimaging import background
from ghimaging.gnuhealth import worker as gnuhealth_worker
from ghimaging.orthanc import worker as orthanc_worker


def names() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()}


def test_start_runs_the_orthanc_sync_and_the_gnuhealth_loop_once(app):
    app.config.update(ORTHANC_SYNC_INTERVAL=3600, ORTHANC_RECONCILE_INTERVAL=3600)
    try:
        background.start(app)
        background.start(app)  # a second call starts nothing more
        running = [t.name for t in threading.enumerate() if t.is_alive()]
        assert running.count("ghimaging-orthanc-sync") == 1
        assert running.count("ghimaging-gnuhealth-sync") == 1
    finally:
        orthanc_worker.stop()
        gnuhealth_worker.stop()
    assert not {"ghimaging-orthanc-sync", "ghimaging-gnuhealth-sync"} & names()
