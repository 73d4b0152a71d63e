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


def _until(cond, seconds: float = 30.0) -> bool:
    """Poll ``cond``; the bound is generous for a loaded machine, not a timing claim."""
    import time

    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    return bool(cond())


def test_a_wake_in_this_process_runs_a_tick_at_once_and_stop_ends_the_wait(app):
    """The loop waits on the wake event, not a bare sleep: with an hour
    between ticks, only the wake can run the second one, and stop() must
    not wait out the hour either."""
    from ghimaging.orthanc import wake

    app.config.update(ORTHANC_SYNC_INTERVAL=3600, ORTHANC_RECONCILE_INTERVAL=0)
    loop = orthanc_worker.SyncWorker(app, interval=3600)
    loop.start()
    try:
        assert _until(lambda: loop.ticks == 1)
        wake.nudge()
        assert _until(lambda: loop.ticks >= 2)
    finally:
        loop.stop(timeout=30)
    assert not loop.is_alive()
