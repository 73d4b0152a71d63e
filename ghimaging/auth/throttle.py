"""Sign-in throttling that slows guessing without locking anyone out.

Failures are counted per (username, address) and per address, never per
username alone: a count per username let anyone lock the administrator out
by typing wrong passwords from anywhere. After ``LOGIN_MAX_FAILURES``
failures for a username from one address (four times as many for any
usernames from one address) every further failure makes the next attempt
from there wait twice as long: 2, 4, 8 … seconds, at most
``LOGIN_LOCKOUT_SECONDS``. The rightful user signing in from another
address is not slowed. While a wait runs, attempts are refused without
checking the password and are not counted.

Unknown usernames are counted like real ones, and every refusal has one
message, so throttling tells nothing about which usernames exist.

This module keeps its own transaction (it commits; nothing else in the
service layer does): a failed sign-in must be counted although the request
that made it fails, and every worker must see the count at once. Call it
with nothing else pending in the session (the sign-in page does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import LoginThrottle
from ..models._time import utcnow
from ..querytools import rowcount

# A key without a failure for this long starts again from nothing.
FORGET_AFTER = timedelta(days=1)
# Any usernames from one address get this many times the per-user allowance.
ADDRESS_FACTOR = 4


@dataclass(frozen=True)
class _Key:
    key: str
    kind: str
    username: str
    address: str
    limit: int


def _keys(username: str, address: str | None) -> list[_Key]:
    name = username.strip().lower()[:64]
    addr = (address or "-")[:100]
    per_user = current_app.config["LOGIN_MAX_FAILURES"]
    return [_Key(f"user:{addr}:{name}", "user", name, addr, per_user),
            _Key(f"address:{addr}", "address", "", addr, per_user * ADDRESS_FACTOR)]


def delay_after(failures: int, limit: int) -> int:
    """Seconds to wait after ``failures`` failures for a key allowed ``limit``."""
    if failures < limit:
        return 0
    longest: int = current_app.config["LOGIN_LOCKOUT_SECONDS"]
    return min(1 << min(failures - limit + 1, 30), longest)


def _wait(row: LoginThrottle | None, now: datetime) -> int:
    if row is None or row.locked_until is None or row.locked_until <= now:
        return 0
    return max(1, math.ceil((row.locked_until - now).total_seconds()))


def wait_seconds(username: str, address: str | None) -> int:
    """Seconds before an attempt for ``username`` from ``address`` is checked; 0: now."""
    now = utcnow()
    return max(_wait(db.session.get(LoginThrottle, k.key), now) for k in _keys(username, address))


def record_failure(username: str, address: str | None) -> None:
    try:
        _count_failure(username, address)
    except IntegrityError:  # two first failures for one key at the same moment
        db.session.rollback()
        _count_failure(username, address)


def _count_failure(username: str, address: str | None) -> None:
    now = utcnow()
    for k in _keys(username, address):
        row = db.session.get(LoginThrottle, k.key)
        if row is None:
            row = LoginThrottle(key=k.key, kind=k.kind, username=k.username, address=k.address,
                                failures=0, first_failure_at=now, last_failure_at=now)
            db.session.add(row)
        elif now - row.last_failure_at > FORGET_AFTER:
            row.failures, row.first_failure_at = 0, now
        row.failures += 1
        row.last_failure_at = now
        wait = delay_after(row.failures, k.limit)
        row.locked_until = now + timedelta(seconds=wait) if wait else None
    # Forget quiet keys (invented usernames would otherwise pile up).
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < now - FORGET_AFTER))
    db.session.commit()


def record_success(username: str, address: str | None) -> None:
    """The user got in from this address: forget their failures there, and
    take them off the address's count too (their own typos, not a guesser's)."""
    user_key, address_key = _keys(username, address)
    mine = db.session.get(LoginThrottle, user_key.key)
    if mine is None:
        return
    shared = db.session.get(LoginThrottle, address_key.key)
    if shared is not None:
        shared.failures = max(0, shared.failures - mine.failures)
        if shared.failures == 0:
            db.session.delete(shared)
        elif delay_after(shared.failures, address_key.limit) == 0:
            shared.locked_until = None
    db.session.delete(mine)
    db.session.commit()


# -- administration ----------------------------------------------------------

def current() -> list[LoginThrottle]:
    """Keys with failures not yet forgotten, those with a running wait first."""
    now = utcnow()
    rows = db.session.scalars(select(LoginThrottle).where(LoginThrottle.last_failure_at >= now - FORGET_AFTER)
                              .order_by(LoginThrottle.last_failure_at.desc())).all()
    return sorted(rows, key=lambda r: _wait(r, now) == 0)


def seconds_left(row: LoginThrottle) -> int:
    return _wait(row, utcnow())


def clear(key: str) -> bool:
    result = db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
    db.session.commit()
    return bool(rowcount(result))


def clear_all() -> int:
    result = db.session.execute(delete(LoginThrottle))
    db.session.commit()
    return rowcount(result)
