"""Accession numbers, order numbers and StudyInstanceUIDs."""

from __future__ import annotations

import uuid

from flask import current_app

from ..extensions import db
from ..models import Counter
from ..querytools import insert_for_upsert

ACCESSION_MAX = 16  # DICOM SH
UID_MAX = 64  # DICOM UI


def next_value(name: str) -> int:
    """The next value of a named counter, inside the caller's transaction.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING: it takes the row lock
    on PostgreSQL and the write lock on SQLite, so two requests created at
    once (even the very first two) never get the same number; a rollback
    gives the number back.
    """
    stmt = insert_for_upsert(Counter).values(name=name, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=[Counter.name], set_={"value": Counter.value + 1})
    return int(db.session.execute(stmt.returning(Counter.value)).scalar_one())


def new_accession_number() -> str:
    prefix = current_app.config["ACCESSION_PREFIX"]
    n = next_value("accession")
    width = max(1, min(8, ACCESSION_MAX - len(prefix)))
    text = f"{prefix}{n:0{width}d}"
    if len(text) > ACCESSION_MAX:
        raise RuntimeError("accession numbers exhausted for this prefix; choose a shorter prefix")
    return text


def new_order_number() -> str:
    return f"{current_app.config['ORDER_PREFIX']}{next_value('order'):06d}"


def new_study_uid() -> str:
    """``2.25.<uuid as integer>`` (ISO/IEC 9834-8), or a UUID-derived suffix
    under the configured organisation root, cut to the 64-character limit."""
    root = current_app.config["ORG_ROOT"]
    value = uuid.uuid4().int
    if not root:
        return f"2.25.{value}"
    room = UID_MAX - len(root) - 1
    suffix = str(value % (10 ** room))
    return f"{root}.{suffix}"
