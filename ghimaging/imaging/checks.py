"""The input rules of requests and results, shared by the pages, the API
and the services: lengths, plausible dates, who may be named where."""

from __future__ import annotations

from datetime import date, datetime

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..models import ReportStyle, User
from ..permissions import Action
from .errors import ValidationError

# The dates a clinic can mean for an appointment or a result. A slip such as
# 0001 or 9999 is never meant, and year 1 with a time-zone offset broke the
# conversion to clinic time (OverflowError, a 500).
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)
TEXT_MAX = 4000  # clinical context, comment
REASON_MAX = 2000
REPORT_MAX = 100_000
ADDENDUM_MAX = 20_000
CAPTION_MAX = 500


def text(errors: dict[str, str], field: str, value: str | None, limit: int) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        errors[field] = _("At most %(limit)s characters.", limit=limit)
    return value


def date_problem(value: date | datetime | None, what: str) -> str:
    """A sentence when ``value`` lies outside EARLIEST_DAY..LATEST_DAY, else ''."""
    if value is None:
        return ""
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        problem: str = _("%(what)s must be between %(first)s and %(last)s.", what=what,
                         first=EARLIEST_DAY.year, last=LATEST_DAY.year)
        return problem
    return ""


def plausible_date(errors: dict[str, str], field: str, value: date | datetime | None, what: str) -> None:
    problem = date_problem(value, what)
    if problem:
        errors[field] = problem


def parse_scheduled(value: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM`` in the clinic's local time, or with an offset, as
    the naive UTC instant to store (``clock.to_utc``); None for an empty
    text. Anything else, or a date outside the years above (as typed, and
    once converted), is ValidationError on ``scheduled_at``."""
    from .. import clock

    if not value:
        return None
    usage = _("Use YYYY-MM-DDTHH:MM (clinic local time).")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError({"scheduled_at": usage}) from None
    problem = date_problem(when, _("The scheduled time"))
    stored = None
    if not problem:
        stored = clock.to_utc(when)  # cannot overflow within the years allowed
        problem = date_problem(stored, _("The scheduled time"))
    if problem or stored is None:
        raise ValidationError({"scheduled_at": problem or usage})
    return stored


def parse_result_date(value: str) -> date:
    """``YYYY-MM-DD`` (the clinic's today when empty) within the years
    above, or ValidationError on ``date``."""
    from .. import clock

    try:
        day = date.fromisoformat(value) if value else clock.today()
    except ValueError:
        raise ValidationError({"date": _("Use YYYY-MM-DD.")}) from None
    problem = date_problem(day, _("The date of the result"))
    if problem:
        raise ValidationError({"date": problem})
    return day


def physician(errors: dict[str, str], user: User | None) -> None:
    if user is not None and not user.can(Action.ORDER):
        errors["physician"] = _("The requesting physician must be an active user with the physician role.")


def caption(value: str | None, what: str) -> str:
    """A picture's caption, stripped; longer than CAPTION_MAX characters is
    an error (on ``images``), whichever way the caption arrives."""
    value = (value or "").strip()
    if len(value) > CAPTION_MAX:
        raise ValidationError({"images": _("%(what)s: the caption is longer than %(limit)s characters.", what=what,
                                             limit=CAPTION_MAX)})
    return value


def result_fields(radiologist: User | None, report: str, report_style: str,
                  result_date: date | None = None) -> dict[str, str]:
    errors: dict[str, str] = {}
    plausible_date(errors, "result_date", result_date, _("The date of the result"))
    if radiologist is not None and not radiologist.can(Action.REPORT):
        errors["radiologist"] = _("The evaluating radiologist must be an active user with the radiologist role.")
    if len(report or "") > REPORT_MAX:
        errors["report"] = _("The report is too long (100,000 characters at most).")
    if report_style not in {s.value for s in ReportStyle}:
        errors["report_style"] = _("Unknown report style.")
    return errors
