"""Ask for an Orthanc sync now instead of at the next periodic one.

Orthanc's push (a Lua ``OnStableStudy`` that POSTs to the wake endpoint)
and anyone with a token may ask. The wish is a timestamp on the server's
row (``sync_wanted_at``), so whichever process or host runs the background
loop sees it at its next tick; the loop of this process is also woken at
once through :data:`WOKEN`. Asking never talks to Orthanc and never syncs
inside the request: Orthanc 1.10.1 holds its Lua lock while the callback
waits for our answer, and every REST request of a sync would wait for it.

The worker clears the wish after a sync only if nobody asked again while
that sync ran (:func:`clear_if_unchanged`), so a study stored after the
sync read ``/changes`` is never left to the periodic sync.
"""

from __future__ import annotations

import threading
from datetime import datetime

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import update

from ..exceptions import NotFound
from ..extensions import db
from ..models import OrthancServer
from ..models._time import utcnow
from ..querytools import rowcount

#: Set by :func:`nudge`; this process's sync loop waits on it between ticks.
WOKEN = threading.Event()


def want_sync(server_id: int) -> datetime:
    """Record that a sync of the server is wanted now (flushed; the caller
    commits, then calls :func:`nudge`). Unknown server: :class:`NotFound`."""
    server = db.session.get(OrthancServer, server_id)
    if server is None:
        raise NotFound(_("Orthanc server not found."))
    server.sync_wanted_at = utcnow()
    db.session.flush()
    return server.sync_wanted_at


def nudge() -> None:
    """Wake this process's sync loop now. Call it after the commit of
    :func:`want_sync`, or the loop may read the row before the wish is in."""
    WOKEN.set()


def clear_if_unchanged(server_id: int, seen: datetime | None) -> bool:
    """Clear the wish the finished sync answered (flushed; the caller
    commits): only if it is still the one the worker saw before that sync
    started. A wake that arrived meanwhile wrote a new time, so the row
    stays wanted and the next tick syncs again. Compared by value, not
    against a clock: the app host that took the wake and the host that ran
    the sync need not agree on the time."""
    if seen is None:
        return False
    result = db.session.execute(update(OrthancServer)
                                .where(OrthancServer.id == server_id, OrthancServer.sync_wanted_at == seen)
                                .values(sync_wanted_at=None)
                                .execution_options(synchronize_session=False))
    return rowcount(result) > 0


def epoch_ms(when: datetime) -> int:
    """A naive UTC time as milliseconds since 1970 (what the API answers)."""
    return int((when - datetime(1970, 1, 1)).total_seconds() * 1000)
