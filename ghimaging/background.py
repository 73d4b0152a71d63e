"""The background threads of a serving process, started in one place.

``ghimaging serve`` and ``wsgi.py`` call :func:`start` once per worker
process; ``create_app`` never does (tests, the CLI and migrations must not
start threads). Each thread is leased or claims its work in the database,
so several processes and hosts never do the same work twice."""

from __future__ import annotations

from flask import Flask


def start(app: Flask) -> None:
    from .gnuhealth import worker as gnuhealth_worker
    from .orthanc import worker as orthanc_worker

    orthanc_worker.start(app)  # Orthanc sync (incremental, reconcile)
    gnuhealth_worker.start(app)  # GNU Health pull and outbox; idles while the sync is off
