from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC: SQLite drops time zones, so every stored instant (the
    scheduled time of a request too) is UTC without tzinfo on both backends,
    converted to the clinic's zone only where people read or type it and
    for the worklist (``ghimaging/clock.py``)."""
    return datetime.now(UTC).replace(tzinfo=None)
