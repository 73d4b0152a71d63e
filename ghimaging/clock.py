"""The clinic's clock: every instant is stored as naive UTC (see
``models/_time.utcnow``) and turned into the clinic's wall-clock time only
where people read or type it, and where a modality does (the worklist).

The clinic's zone and date format are settings (``settings/service.py``);
they are read once per request (kept on ``flask.g``), not once per value
shown. Outside a request (the worker, the command line) they are read each
time, so a change made in the browser is seen at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

#: The date formats a clinic may choose: setting value -> strftime pattern.
#: Fixed choices, so a typo cannot make every page show nonsense.
DATE_FORMATS: dict[str, str] = {
    "dd.mm.yyyy": "%d.%m.%Y",
    "dd/mm/yyyy": "%d/%m/%Y",
    "mm/dd/yyyy": "%m/%d/%Y",
    "yyyy-mm-dd": "%Y-%m-%d",
}
DEFAULT_DATE_FORMAT = "yyyy-mm-dd"
DEFAULT_ZONE = "UTC"


@dataclass(frozen=True)
class Locale:
    """What the display needs of the clinic's settings."""

    zone: ZoneInfo
    date_pattern: str
    language: str = "en"
    paper_size: str = "A4"


_G_KEY = "_ghimaging_locale"


def clinic_locale() -> Locale:
    """The clinic's zone, date format, language and paper size (cached per
    request). Without an application context (a unit test of a filter, a
    script): UTC and ISO dates."""
    from flask import g, has_app_context, has_request_context

    if not has_app_context():
        return Locale(ZoneInfo(DEFAULT_ZONE), DATE_FORMATS[DEFAULT_DATE_FORMAT])
    if has_request_context():
        cached = g.get(_G_KEY)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
    found = _read()
    if has_request_context():
        setattr(g, _G_KEY, found)
    return found


def forget() -> None:
    """Drop the request's cached settings (after they are saved)."""
    from flask import g, has_app_context

    if has_app_context():
        g.pop(_G_KEY, None)


def _read() -> Locale:
    from .settings.service import locale_settings

    values = locale_settings()
    return Locale(zone_or_utc(values["time_zone"]),
                  DATE_FORMATS.get(values["date_format"], DATE_FORMATS[DEFAULT_DATE_FORMAT]),
                  values["language"], values["paper_size"])


def zone_or_utc(name: str) -> ZoneInfo:
    """The zone of that IANA name; UTC for one this machine does not know
    (a name saved before the zone database changed must not break pages)."""
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo(DEFAULT_ZONE)


def zone() -> ZoneInfo:
    return clinic_locale().zone


def to_local(utc: datetime) -> datetime:
    """A stored instant (naive UTC) as the clinic's naive wall-clock time."""
    return utc.replace(tzinfo=UTC).astimezone(zone()).replace(tzinfo=None)


def to_local_aware(utc: datetime) -> datetime:
    """A stored instant as an aware time in the clinic's zone (for an API
    answer that says its offset)."""
    return utc.replace(tzinfo=UTC).astimezone(zone())


def to_utc(local: datetime | None) -> datetime | None:
    """What someone typed (clinic wall-clock time, naive; or aware, with
    its own offset) as the naive UTC instant to store. A wall-clock time
    the clocks skip or repeat at a DST change takes the earlier offset
    (``fold=0``), as a person reading the clock before the change would."""
    if local is None:
        return None
    aware = local if local.tzinfo is not None else local.replace(tzinfo=zone())
    return aware.astimezone(UTC).replace(tzinfo=None)


def utc_offset(utc: datetime) -> str:
    """``+HHMM`` of the clinic's zone at that instant (DST included), as
    DICOM TimezoneOffsetFromUTC wants."""
    offset = to_local_aware(utc).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def today() -> date:
    """Today's date on the clinic's wall calendar."""
    return local_date(datetime.now(UTC).replace(tzinfo=None))


def local_date(utc: datetime, tz: tzinfo | None = None) -> date:
    """The calendar date of a stored instant (naive UTC) in the clinic's
    zone (or ``tz``): a DICOM StudyDate, "today" on a start page."""
    return utc.replace(tzinfo=UTC).astimezone(tz or zone()).date()


def day_bounds(day: date, tz: tzinfo | None = None) -> tuple[datetime, datetime]:
    """The stored (naive UTC) instants where the clinic's ``day`` (in its
    zone, or ``tz``) starts and the next day starts: ``start <= scheduled_at
    < end`` is "on that day" (23 or 25 hours at a DST change)."""
    tz = tz or zone()
    start = datetime.combine(day, datetime.min.time(), tz).astimezone(UTC).replace(tzinfo=None)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC).replace(tzinfo=None)
    return start, end
