"""Small helpers for the list queries."""

from __future__ import annotations

from typing import Any

MAX_PAGE = 1_000_000


def contains(column: Any, text: str):
    """``column LIKE %text%`` with ``%``, ``_`` and ``\\`` taken literally:
    a search for "50%" must not list everything."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%{escaped}%", escape="\\")


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


def insert_for_upsert(target: Any):
    """``INSERT`` with ``on_conflict_do_update`` for the session's database:
    SQLite and PostgreSQL spell the statement the same, from different modules."""
    from .extensions import db

    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(target)


def find_casefolded(model: Any, column: Any, value: str) -> Any:
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
