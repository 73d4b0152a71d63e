"""The background threads of a serving process, started in one place.

``ghimaging serve`` and ``wsgi.py`` call :func:`start` once per worker
process, ``ghimaging worker`` runs them alone; ``create_app`` never does (tests, the CLI and migrations must not
start threads). Each thread is leased or claims its work in the database,
so several processes and hosts never do the same work twice."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from flask import Flask

T = TypeVar("T", bound=threading.Thread)


class Slot(Generic[T]):
    """The one thread of a kind in this process: started once, replaced if
    it died, stopped on exit (its ``stop(timeout)`` is called)."""

    def __init__(self) -> None:
        self._thread: T | None = None
        self._lock = threading.Lock()

    def start(self, make: Callable[[], T]) -> T:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = make()
                self._thread.start()
                atexit.register(self._thread.stop, 5.0)  # type: ignore[attr-defined]
            return self._thread

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._thread.stop()  # type: ignore[attr-defined]
                self._thread = None


def start(app: Flask, *, serving: bool = True) -> bool:
    """Start the background threads in this process; a serving process
    leaves them to ``ghimaging worker`` when RUN_BACKGROUND is false.
    Whether they were started."""
    if serving and not app.config["RUN_BACKGROUND"]:
        return False
    from .gnuhealth import worker as gnuhealth_worker
    from .orthanc import worker as orthanc_worker

    orthanc_worker.start(app)  # Orthanc sync (incremental, reconcile)
    gnuhealth_worker.start(app)  # GNU Health pull and outbox; idles while the sync is off
    return True


def stop() -> None:
    """Stop this process's background threads, waiting for the step each
    is in to finish (a sync page is committed or rolled back, never cut)."""
    from .gnuhealth import worker as gnuhealth_worker
    from .orthanc import worker as orthanc_worker

    orthanc_worker.stop()
    gnuhealth_worker.stop()
