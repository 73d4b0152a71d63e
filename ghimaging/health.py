"""``GET /healthz``: can this instance do its work right now?

For the clinic's monitoring, the installer's last check and a person
looking after the box: the database answers, each Orthanc answers and its
sync is not lagging, the worklist folder takes files, and GNU Health's
outbox is not piling up. 200 when every check passes, 503 when one fails,
with the checks in JSON either way.

Public (no sign-in), so it says nothing a passer-by should not know: no
addresses, user names, passwords or error texts from other systems (they
can carry addresses) — only labels, ids, yes/no, counts and ages.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import func, select, text

from .extensions import db
from .models._time import utcnow

bp = Blueprint("health", __name__)

#: A sync this many poll intervals behind (and at least this many seconds)
#: counts as lagging: Orthanc may be fine, but studies do not reach us.
LAG_INTERVALS = 5
LAG_FLOOR_SECONDS = 300
#: Each Orthanc gets this long to answer /system.
ORTHANC_CHECK_SECONDS = 3.0


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    report = check_all()
    return jsonify(report), 200 if report["status"] == "ok" else 503


def check_all() -> dict[str, Any]:
    """Every check; the database first, since the others read it."""
    checks: dict[str, Any] = {"database": _database()}
    if checks["database"]["ok"]:
        checks["orthanc"] = _orthancs()
        checks["gnuhealth"] = _gnuhealth()
    checks["worklist_folder"] = _worklist_folder()
    failed = [name for name, value in checks.items() if not _ok(value)]
    db.session.rollback()  # read only; never leave a transaction open
    return {"status": "fail" if failed else "ok", "failed": failed, "checks": checks,
            "time": utcnow().isoformat(timespec="seconds") + "Z"}


def _ok(value: Any) -> bool:
    if isinstance(value, list):
        return all(item["ok"] for item in value)
    return bool(value["ok"])


def _database() -> dict[str, Any]:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not usable"; its text may hold the address
        db.session.rollback()
        return {"ok": False, "problem": f"The database does not answer ({type(exc).__name__})."}
    return {"ok": True, "kind": db.engine.dialect.name}


def _age(since: datetime | None) -> int | None:
    return None if since is None else max(0, int((utcnow() - since).total_seconds()))


def _orthancs() -> list[dict[str, Any]]:
    from .models import OrthancServer
    from .orthanc import servers
    from .orthanc.client import OrthancError

    interval = int(current_app.config["ORTHANC_SYNC_INTERVAL"])
    allowed_lag = max(LAG_INTERVALS * interval, LAG_FLOOR_SECONDS) if interval > 0 else None
    out = []
    for server in db.session.scalars(select(OrthancServer).order_by(OrthancServer.id)):
        entry: dict[str, Any] = {"id": server.id, "label": server.label}
        try:
            servers.client_for(server, timeout=(ORTHANC_CHECK_SECONDS, ORTHANC_CHECK_SECONDS), retries=0,
                               total_timeout=ORTHANC_CHECK_SECONDS).system()
            entry["reachable"] = True
        except OrthancError as exc:
            entry["reachable"] = False
            entry["problem"] = f"Orthanc does not answer as expected ({type(exc).__name__})."
        lag = _age(server.last_sync_at)
        entry["sync_lag_seconds"] = lag
        entry["sync_failures"] = server.failures
        lagging = allowed_lag is not None and (lag is None or lag > allowed_lag)
        if lagging and entry["reachable"]:
            entry["problem"] = ("Never synced yet." if lag is None
                                else f"The last sync was {lag} s ago (more than {allowed_lag} s).")
        entry["ok"] = entry["reachable"] and not lagging
        out.append(entry)
    return out


def _gnuhealth() -> dict[str, Any]:
    from .models.gnuhealth import GnuHealthConfig, OutboxItem, OutboxState

    config = db.session.get(GnuHealthConfig, 1)
    if config is None or not config.enabled:
        return {"ok": True, "enabled": False}
    counts = dict(db.session.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all())
    oldest = db.session.scalar(select(func.min(OutboxItem.created_at))
                               .where(OutboxItem.state == OutboxState.PENDING.value))
    failed = int(counts.get(OutboxState.FAILED.value, 0))
    entry: dict[str, Any] = {"enabled": True, "outbox_pending": int(counts.get(OutboxState.PENDING.value, 0)),
                             "outbox_failed": failed, "oldest_pending_seconds": _age(oldest)}
    entry["ok"] = failed == 0
    if failed:
        entry["problem"] = f"{failed} change(s) could not be sent to GNU Health; see the outbox page."
    return entry


def _worklist_folder() -> dict[str, Any]:
    """Really write and remove a file: permissions, a read-only mount and a
    full disk all show here, not only a missing folder."""
    configured = current_app.config.get("WORKLIST_DIR")
    if not configured:
        return {"ok": True, "configured": False}
    folder = Path(configured)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # as the worklist writer does on first use
        fd, name = tempfile.mkstemp(prefix=".healthz-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return {"ok": False, "configured": True,
                "problem": f"ghimaging cannot write worklist files there ({exc.strerror or type(exc).__name__})."}
    return {"ok": True, "configured": True}
