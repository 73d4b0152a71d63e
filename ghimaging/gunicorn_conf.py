"""How ghimaging is served by gunicorn: ``ghimaging serve`` runs gunicorn
with this module as its configuration (its options set bind, workers,
threads and timeout), and ``gunicorn -c python:ghimaging.gunicorn_conf
wsgi:app`` reads the same settings.

One worker by default, as the installer's unit runs it: a Raspberry Pi with
1 GB also runs Orthanc, and every worker process holds a whole application
(see bench/bench_footprint.py); ``--workers`` adds more.

Threaded workers (``gthread``): with the default ``sync`` workers a request
waiting on a silent Orthanc, a long upload or a client that sends its
headers a line at a time took a whole process, and two of them stalled the
application (seen: ``/login`` unanswered for 40 s behind two such clients).
Each worker process now serves ``threads`` requests at once, so one slow
call or slow client holds one thread, not the application. Calls to Orthanc
made while someone waits have their own deadlines (``orthanc/client.py``).

Many slow clients at once can still take every thread: put nginx in front
(it reads whole requests before passing them on; see the README).

With ``gthread`` the worker ``timeout`` is a heartbeat of the worker's main
loop, not a limit on one request: a long upload is no longer killed by it,
and a process that stops answering is still replaced.
"""

from __future__ import annotations

import os
from typing import Any

#: The application gunicorn loads in each worker (``ghimaging serve``).
APP = "ghimaging:create_app()"

bind = "127.0.0.1:8000"
workers = 1  # the installer's unit: one process holds the app and its background threads
worker_class = "gthread"
threads = 8  # a request waiting on a slow Orthanc holds one; 4 stuck previews left 4 threads none
timeout = 120
graceful_timeout = 30
keepalive = 5  # seconds an idle kept-alive connection is held (in the main loop, not a thread)
accesslog = "-"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# gunicorn 24+ opens a control socket at ~/.gunicorn/gunicorn.ctl by default,
# one path for every server run by the user: ghimaging does not use it.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    """The background threads (Orthanc sync, worklist files, GNU Health
    outbox) in each worker once its application is loaded; not in the
    master, which never loads it (no ``preload_app``: measured in
    bench/bench_footprint.py, a preloaded master costs more memory than it
    shares). Started once per process whichever way the app was loaded
    (``wsgi.py`` starts them too)."""
    from flask import Flask

    from . import background

    app = worker.wsgi
    if isinstance(app, Flask) and app.import_name == "ghimaging":
        background.start(app)
