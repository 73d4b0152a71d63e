"""Migration 0014: scheduled times were the machine's wall-clock time; they
become UTC like every other stored time, and the machine's zone becomes the
clinic's ``time_zone`` setting, so pages and worklists show what they
showed before. Downgrading converts back."""

from __future__ import annotations

import time

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from ghimaging import MIGRATIONS_DIR, create_app
from ghimaging.extensions import db


def insert(conn, table: str, **values) -> None:
    """A row with ``values``; other required columns (as the schema at 0013
    has them) get an empty value of their type."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy import types

    for col in sa_inspect(conn).get_columns(table):
        if col["name"] in values or col["nullable"] or col.get("default") is not None \
                or col.get("autoincrement") is True:
            continue
        kind = col["type"]
        values[col["name"]] = (False if isinstance(kind, types.Boolean) else
                               0 if isinstance(kind, (types.Integer, types.Numeric)) else
                               "2026-01-01 00:00:00" if isinstance(kind, (types.DateTime, types.Date)) else "")
    names = ", ".join(values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in values)})"), values)


def add_rows(conn) -> None:
    insert(conn, "patients", id=1, puid="D-100", family_name="Weiß", given_name="Dana", sex="F")
    insert(conn, "modality_types", id=1, code="CR", name="Computed radiography")
    insert(conn, "imaging_tests", id=1, code="XR", name="Chest", modality_id=1, ae_title="XRAY1",
           worklist_template="general", active=True)
    for i, when in ((1, "2026-07-15 09:00:00"), (2, "2026-11-30 00:30:00"), (3, None)):
        insert(conn, "imaging_requests", id=i, order_number=f"O{i}", patient_id=1, test_id=1, state="requested",
               accession_number=f"GH{i}", study_instance_uid=f"2.25.{i}", scheduled_at=when)


@pytest.fixture
def berlin(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _scheduled(conn) -> dict[int, str | None]:
    rows = conn.execute(text("SELECT id, scheduled_at FROM imaging_requests ORDER BY id")).all()
    return {i: (str(w)[:16] if w is not None else None) for i, w in rows}


def test_berlin_wall_times_become_utc_and_the_zone_a_setting(fresh_url, tmp_path, berlin):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": fresh_url, "TESTING": True})
    with app.app_context():
        try:
            upgrade(directory=str(MIGRATIONS_DIR), revision="0013")
            with db.engine.begin() as conn:
                add_rows(conn)
            upgrade(directory=str(MIGRATIONS_DIR), revision="0014")
            with db.engine.connect() as conn:
                # Summer (UTC+2), winter (UTC+1, across midnight), none.
                assert _scheduled(conn) == {1: "2026-07-15 07:00", 2: "2026-11-29 23:30", 3: None}
                zone = conn.execute(text("SELECT value FROM settings WHERE key = 'time_zone'")).scalar_one()
                assert zone == "Europe/Berlin"
            downgrade(directory=str(MIGRATIONS_DIR), revision="0013")
            with db.engine.connect() as conn:
                assert _scheduled(conn) == {1: "2026-07-15 09:00", 2: "2026-11-30 00:30", 3: None}
        finally:
            db.session.remove()
            db.engine.dispose()


def test_on_a_utc_machine_nothing_moves(fresh_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": fresh_url, "TESTING": True})
    with app.app_context():
        try:
            upgrade(directory=str(MIGRATIONS_DIR), revision="0013")
            with db.engine.begin() as conn:
                add_rows(conn)
            upgrade(directory=str(MIGRATIONS_DIR), revision="0014")
            with db.engine.connect() as conn:
                assert _scheduled(conn) == {1: "2026-07-15 09:00", 2: "2026-11-30 00:30", 3: None}
                assert conn.execute(text("SELECT value FROM settings WHERE key = 'time_zone'")).scalar_one() == "UTC"
        finally:
            db.session.remove()
            db.engine.dispose()
