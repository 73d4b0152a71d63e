"""How ghimaging is served by gunicorn: ``ghimaging serve`` applies these
settings, and ``gunicorn -c python:ghimaging.gunicorn_conf wsgi:app`` reads
the same ones.

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

bind = "127.0.0.1:8000"
workers = 1  # the installer's unit: one process holds the app and its background threads
worker_class = "gthread"
threads = 4
timeout = 120
graceful_timeout = 30
keepalive = 5  # seconds an idle kept-alive connection is held (in the main loop, not a thread)
accesslog = "-"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# gunicorn 24+ opens a control socket at ~/.gunicorn/gunicorn.ctl by default,
# one path for every server run by the user: ghimaging does not use it.
control_socket_disable = True

# The only settings this module stands for; ``ghimaging serve`` sets them
# (those the installed gunicorn knows: older ones lack the control socket).
SETTINGS = ("bind", "workers", "worker_class", "threads", "timeout", "graceful_timeout", "keepalive",
            "accesslog", "worker_tmp_dir", "control_socket_disable")


def settings(**overrides: object) -> dict[str, object]:
    """These settings, with ``overrides`` (``None`` keeps the default)."""
    out = {name: globals()[name] for name in SETTINGS}
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out
