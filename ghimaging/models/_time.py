from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC: SQLite drops time zones, so every stored instant is UTC
    without tzinfo on both backends and converted only for display."""
    return datetime.now(UTC).replace(tzinfo=None)
