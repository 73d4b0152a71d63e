"""Scheduled times stored as UTC like every other time; the clinic's time
zone becomes a setting

Until now ``imaging_requests.scheduled_at`` held the wall-clock time of the
machine's zone. Rows are converted from that zone to UTC, and the zone is
saved as the clinic's ``time_zone`` setting (when none is set) so that pages
and worklists show the same times as before. On a machine in UTC nothing
changes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 16:30:00

"""
import contextlib
import os
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_requests = sa.table('imaging_requests', sa.column('id', sa.Integer), sa.column('scheduled_at', sa.DateTime))
_settings = sa.table('settings', sa.column('key', sa.String), sa.column('value', sa.Text))


def machine_zone() -> str:
    """The IANA name of this machine's zone (TZ, else /etc/localtime's
    link, else /etc/timezone), or "UTC" when none can be read."""
    candidates = [os.environ.get('TZ', '').lstrip(':')]
    localtime = Path('/etc/localtime')
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if 'zoneinfo/' in target:
            candidates.append(target.split('zoneinfo/', 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path('/etc/timezone').read_text().strip())
    for name in candidates:
        if name:
            try:
                ZoneInfo(name)
            except (ValueError, KeyError, OSError):
                continue
            return name
    return 'UTC'


def _convert(conn: sa.Connection, to_utc: bool, zone: ZoneInfo) -> None:
    for row_id, when in conn.execute(sa.select(_requests.c.id, _requests.c.scheduled_at)
                                     .where(_requests.c.scheduled_at.is_not(None))).all():
        if to_utc:
            new = when.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)
        else:
            new = when.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)
        if new != when:
            conn.execute(_requests.update().where(_requests.c.id == row_id).values(scheduled_at=new))


def upgrade() -> None:
    conn = op.get_bind()
    stored = conn.execute(sa.select(_settings.c.value).where(_settings.c.key == 'time_zone')).scalar()
    name = stored or machine_zone()
    if not stored:
        conn.execute(_settings.insert().values(key='time_zone', value=name))
    if name != 'UTC':
        _convert(conn, True, ZoneInfo(name))


def downgrade() -> None:
    conn = op.get_bind()
    stored = conn.execute(sa.select(_settings.c.value).where(_settings.c.key == 'time_zone')).scalar()
    if stored and stored != 'UTC':
        try:
            zone = ZoneInfo(stored)
        except (ValueError, KeyError, OSError):
            return
        _convert(conn, False, zone)
