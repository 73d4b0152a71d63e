"""Small helpers for the list queries."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import Insert

MAX_PAGE = 1_000_000
T = TypeVar("T")


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """``column LIKE %text%`` with ``%``, ``_`` and ``\\`` taken literally:
    a search for "50%" must not list everything."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    clause: ColumnElement[bool] = column.like(f"%{escaped}%", escape="\\")
    return clause


def page_number(raw: Any) -> int:
    """A page number from a query string, clamped: absurd numbers give an
    empty page, never an integer overflow in the database."""
    try:
        page = int(raw)
    except (TypeError, ValueError):
        return 1
    return min(max(1, page), MAX_PAGE)


def bounded_int(raw: Any) -> int | None:
    """An id from a query string, or None when it is not one (a 30-digit
    number would overflow the database's integer)."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= 2**31 - 1 else None


def insert_for_upsert(target: Any) -> Any:
    """``INSERT`` with ``on_conflict_do_update`` for the session's database:
    SQLite and PostgreSQL spell the statement the same, from different
    modules (typed ``Any``: the two ``Insert`` classes share no base that
    has ``on_conflict_do_update``)."""
    from sqlalchemy.dialects import postgresql, sqlite

    from .extensions import db

    insert: Insert
    if db.session.get_bind().dialect.name == "postgresql":
        insert = postgresql.insert(target)
    else:
        insert = sqlite.insert(target)
    return insert


def find_casefolded(model: type[T], column: InstrumentedAttribute[str], value: str) -> T | None:
    """The row whose ``column`` equals ``value`` in any letter case, for
    names kept unique regardless of case (usernames, test codes, server
    labels). SQL's lower() folds only ASCII on SQLite (and under
    PostgreSQL's C locale), so a non-ASCII value is compared in Python over
    the rows, which are few for these tables."""
    from sqlalchemy import func, select

    from .extensions import db

    value = value.strip()
    if value.isascii():
        return db.session.scalar(select(model).where(func.lower(column) == value.lower()).limit(1))
    folded = value.casefold()
    key = column.key
    return next((row for row in db.session.scalars(select(model)) if getattr(row, key).casefold() == folded), None)


def rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched (``Result`` is typed without
    ``rowcount``, which only its cursor kind has)."""
    count: int | None = getattr(result, "rowcount", None)
    return count or 0
