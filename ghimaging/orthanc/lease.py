"""The sync lease: only its holder syncs a server, across threads,
processes and hosts.

Each call is its own short transaction, committed at once: a lease is worth
something only when every other runner sees it now, not when the holder's
next page of rows commits. So the runner calls it only when its session
holds nothing uncommitted of its own: before a run (what the caller left
pending is committed with it, as at any boundary), between pages (after the
checkpoint's commit) and after the last one.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import timedelta

from sqlalchemy import or_, update

from ..extensions import db
from ..models import OrthancServer
from ..models._time import utcnow

LEASE_SECONDS = 120


class LeaseLost(RuntimeError):
    """Our lease expired and another runner holds it: stop writing."""


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(server_id: int, owner: str, seconds: int = LEASE_SECONDS) -> bool:
    """Take the server's lease if it is free, expired or already ours.

    One conditional UPDATE: atomic on PostgreSQL (row lock) and on SQLite
    (database write lock), so two runners can never both win.
    """
    now = utcnow()
    res = db.session.execute(
        update(OrthancServer)
        .where(OrthancServer.id == server_id,
               or_(OrthancServer.lease_owner.is_(None), OrthancServer.lease_until < now,
                   OrthancServer.lease_owner == owner))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False))
    db.session.commit()
    return bool(getattr(res, "rowcount", 0) == 1)


def release_lease(server_id: int, owner: str) -> None:
    db.session.execute(update(OrthancServer)
                       .where(OrthancServer.id == server_id, OrthancServer.lease_owner == owner)
                       .values(lease_owner=None, lease_until=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()
