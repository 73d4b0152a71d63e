"""The work queues of the start page, one per role, and their counts in
the navigation.

- technologist: today's exams per station (AE title, else modality), urgent
  first then by scheduled time, each once; yesterday's not performed; the
  requested ones with no time;
- radiologist: to report (images received, no result: urgent first, then
  oldest), preliminary results (yours, then others'), finalised today;
- physician: your orders with a result finalised since your last visit,
  and your orders still waiting.

Each queue is one indexed query with a limit (the indexes are in
``models/imaging.py``, migration 0011), so a clinic's history does not slow
the page: ``bench/bench_queues.py`` measures it. Which state a row shows is
:mod:`.progress`'s; "today" is the clinic's day (``clock.zone()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Integer, Select, cast, func, select
from sqlalchemy.orm import defaultload, lazyload, selectinload

from .. import clock
from ..extensions import db
from ..models import ImagingRequest, OrthancStudy, RequestState, Result, Role, StudyLink, User
from ..models._time import utcnow
from ..permissions import Action, allowed
from . import progress

S = RequestState
LIMIT = 50  # rows per queue: more is a list to search, not a queue


CalendarDate = date  # (inside Day, ``date`` is the field)


@dataclass(frozen=True)
class Day:
    """The clinic's day: its date on the clinic's calendar and where it
    starts and ends as stored instants (naive UTC, as ``scheduled_at`` and
    ``finalised_at`` are; a day may last 23 or 25 hours)."""

    date: date
    start: datetime
    end: datetime
    zone: tzinfo

    @classmethod
    def of(cls, now_utc: datetime | None = None, zone: tzinfo | None = None) -> Day:
        zone = zone or clock.zone()
        return cls.on(clock.local_date(now_utc or utcnow(), zone), zone)

    @classmethod
    def on(cls, day: CalendarDate, zone: tzinfo) -> Day:
        return cls(day, *clock.day_bounds(day, zone), zone)

    def before(self) -> Day:
        return Day.on(self.date - timedelta(days=1), self.zone)


def _rows() -> Select[ImagingRequest]:
    """Requests with what a row shows (patient, test, physician joined; the
    result in one more SELECT for the whole page)."""
    # The people shown need their names only, not their roles (which load
    # with a user by default).
    return select(ImagingRequest).options(
        defaultload(ImagingRequest.requesting_physician).lazyload(User.role_rows),
        selectinload(ImagingRequest.result).options(
            lazyload(Result.request), defaultload(Result.radiologist).lazyload(User.role_rows)))


def _all(stmt: Select[ImagingRequest]) -> list[ImagingRequest]:
    return list(db.session.scalars(stmt.limit(LIMIT)).unique())


# -- technologist ------------------------------------------------------------------------


@dataclass
class Station:
    key: str
    label: str
    rows: list[ImagingRequest] = field(default_factory=list)


@dataclass(frozen=True)
class Images:
    count: int
    at: datetime
    study_id: int


def station_of(req: ImagingRequest) -> tuple[str, str]:
    """(key, label) of the station that performs ``req``: the test's AE title
    (what the modality asks the worklist for), else its modality."""
    test = req.test
    if test.ae_title:
        return test.ae_title, f"{test.ae_title} · {test.modality.name}"
    return test.modality.code, test.modality.name


def today_stmt(day: Day) -> Select[ImagingRequest]:
    # "Not draft, not cancelled" rather than "requested or done": the same
    # rows, and the planner takes the day's range of scheduled times instead
    # of walking every requested and done request.
    return _rows().where(ImagingRequest.scheduled_at >= day.start, ImagingRequest.scheduled_at < day.end,
                         ImagingRequest.state.not_in([S.DRAFT.value, S.CANCELLED.value]))


def _waiting() -> Any:
    return (ImagingRequest.state == S.REQUESTED.value) & ImagingRequest.images_available.is_(False)


def technologist_today(day: Day) -> list[Station]:
    """Today's requested and done exams, per station; in each, urgent first,
    then by scheduled time."""
    stmt = today_stmt(day).order_by(ImagingRequest.urgent.desc(), ImagingRequest.scheduled_at,
                                    ImagingRequest.id)
    stations: dict[str, Station] = {}
    for req in db.session.scalars(stmt.limit(4 * LIMIT)).unique():
        key, label = station_of(req)
        stations.setdefault(key, Station(key, label)).rows.append(req)
    return sorted(stations.values(), key=lambda s: s.key)


def yesterday_not_performed(day: Day) -> list[ImagingRequest]:
    yesterday = day.before()
    return _all(_rows().where(ImagingRequest.scheduled_at >= yesterday.start,
                              ImagingRequest.scheduled_at < yesterday.end, _waiting())
                .order_by(ImagingRequest.urgent.desc(), ImagingRequest.scheduled_at, ImagingRequest.id))


def not_scheduled() -> list[ImagingRequest]:
    return _all(_rows().where(ImagingRequest.scheduled_at.is_(None), _waiting()).order_by(*_urgent_then_oldest()))


def images_of(requests: Sequence[ImagingRequest]) -> dict[int, Images]:
    """Instances received and when the first study was linked, per request
    (one grouped SELECT for the page)."""
    ids = [r.id for r in requests if r.images_available]
    if not ids:
        return {}
    rows = db.session.execute(
        select(StudyLink.request_id, func.sum(OrthancStudy.instance_count), func.min(StudyLink.created_at),
               func.min(StudyLink.study_id))
        .join(OrthancStudy, OrthancStudy.id == StudyLink.study_id)
        .where(StudyLink.request_id.in_(ids)).group_by(StudyLink.request_id))
    return {rid: Images(int(n or 0), at, study) for rid, n, at, study in rows}


# -- radiologist ---------------------------------------------------------------------------


def to_report_stmt() -> Select[ImagingRequest]:
    return _rows().where(ImagingRequest.state == S.REQUESTED.value, ImagingRequest.images_available.is_(True),
                         progress.no_result())


def _urgent_then_oldest() -> tuple[Any, Any]:
    """Urgent first, then oldest, as expressions: SQLite's planner then
    looks the rows up in their range of the queue index instead of walking
    every requested request in the list index's order to skip the sort."""
    return cast(ImagingRequest.urgent, Integer).desc(), ImagingRequest.id + 0


def to_report() -> list[ImagingRequest]:
    return _all(to_report_stmt().order_by(*_urgent_then_oldest()))


def preliminary(user: User) -> tuple[list[ImagingRequest], list[ImagingRequest]]:
    """Results not yet final: the user's own, and everybody else's."""
    base = (_rows().join(Result, Result.request_id == ImagingRequest.id)
            .where(Result.finalised_at.is_(None)).order_by(ImagingRequest.urgent.desc(), Result.id))
    mine = _all(base.where(Result.radiologist_id == user.id))
    others = _all(base.where((Result.radiologist_id != user.id) | Result.radiologist_id.is_(None)))
    return mine, others


def finalised_today(day: Day) -> list[ImagingRequest]:
    return _all(_rows().join(Result, Result.request_id == ImagingRequest.id)
                .where(Result.finalised_at >= day.start, Result.finalised_at < day.end).order_by(Result.finalised_at.desc()))


# -- physician --------------------------------------------------------------------------------


def _since(user: User) -> datetime:
    """The physician's last visit; a first visit looks back a week."""
    return user.queue_seen_at or utcnow() - timedelta(days=7)


def results_since_stmt(user: User, since: datetime) -> Select[ImagingRequest]:
    # Driven by the short range of results finalised since the last visit,
    # not by every order the physician ever made: ``+ 0`` keeps SQLite's
    # planner off the physician's index (PostgreSQL weighs both itself).
    return (_rows().join(Result, Result.request_id == ImagingRequest.id)
            .where(ImagingRequest.requesting_physician_id + 0 == user.id, Result.finalised_at > since))


def new_results(user: User, until: datetime) -> list[ImagingRequest]:
    """Results finalised since the last visit and up to ``until``, the
    instant :func:`mark_seen` then records: one finalised while the page is
    built is new on the next visit rather than never."""
    return _all(results_since_stmt(user, _since(user)).where(Result.finalised_at <= until)
                .order_by(Result.finalised_at.desc()))


def my_waiting(user: User) -> list[ImagingRequest]:
    """The physician's orders not closed yet (drafts to submit, exams to
    perform, results not final), urgent first, then oldest."""
    return _all(_rows().where(ImagingRequest.requesting_physician_id == user.id,
                              ImagingRequest.state.in_([S.DRAFT.value, S.REQUESTED.value]))
                .order_by(ImagingRequest.urgent.desc(), ImagingRequest.id))


def mark_seen(user: User, at: datetime) -> None:
    """The physician has seen their start page: "since your last visit"
    counts from ``at``, the instant taken before the page read its queues
    (``start_page``'s ``now``), never later. Flushes; the page commits."""
    user.queue_seen_at = at
    db.session.flush()


# -- the start page and the navigation ---------------------------------------------------------


def _count(stmt: Select[Any]) -> int:
    return db.session.scalar(select(func.count()).select_from(
        stmt.with_only_columns(ImagingRequest.id).order_by(None).subquery())) or 0


#: Each queue and the action it serves (the permission map decides who may).
QUEUE_ACTIONS: dict[str, Action] = {
    "technologist": Action.PERFORM, "radiologist": Action.REPORT, "physician": Action.ORDER}


def queues_of(user: User) -> set[str]:
    """The queues on the user's start page and navigation: the actions their
    clinical roles allow, by the permission map. The administrator role,
    which may do everything, brings no queue by itself: an administrator
    keeps the overview, and gets a queue with a clinical role."""
    if not user.active:
        return set()
    clinical = user.roles - {Role.ADMIN}
    return {name for name, action in QUEUE_ACTIONS.items() if allowed(clinical, action)}


def counts(user: User) -> dict[str, int]:
    """The numbers in the navigation, one indexed count per queue the user has."""
    out: dict[str, int] = {}
    mine = queues_of(user)
    if "technologist" in mine:
        day = Day.of()
        out["today"] = _count(today_stmt(day).where(_waiting()))
    if "radiologist" in mine:
        out["to_report"] = _count(to_report_stmt())
    if "physician" in mine:
        out["results"] = _count(results_since_stmt(user, _since(user)))
    return out


def start_page(user: User, now: datetime | None = None) -> dict[str, Any]:
    """Every section the user's queues give, for the start page. ``now`` (a
    stored instant, taken before any queue is read) is the page's "today"
    and what :func:`mark_seen` records as seen."""
    now = now or utcnow()
    day = Day.of(now)
    page: dict[str, Any] = {"day": day, "now": now}
    mine = queues_of(user)
    if "technologist" in mine:
        stations = technologist_today(day)
        yesterday = yesterday_not_performed(day)
        unscheduled = not_scheduled()
        page["technologist"] = {"stations": stations, "yesterday": yesterday, "unscheduled": unscheduled,
                                "images": images_of([r for s in stations for r in s.rows]
                                                    + yesterday + unscheduled)}
    if "radiologist" in mine:
        own, others = preliminary(user)
        page["radiologist"] = {"to_report": to_report(), "mine": own, "others": others,
                               "finalised": finalised_today(day)}
    if "physician" in mine:
        page["physician"] = {"new": new_results(user, now), "waiting": my_waiting(user), "since": user.queue_seen_at}
    return page
