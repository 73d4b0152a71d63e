"""The life of an imaging request: ordering, editing, submitting,
cancelling; the results are in :mod:`.reporting`, the states and the one
transition in :mod:`.states`, the input rules in :mod:`.checks`.

Every change goes through these functions, whether it comes from a page,
the JSON API, the CLI or a background job, so the rules live in one place.
They record who did what in the request's events, flush, and never commit:
the caller commits once, and a request is never ``requested`` without its
worklist file (written before the commit, removed again if the transaction
does not commit; see :mod:`.effects`). This module also names everything
the callers use, so ``workflow.X`` reaches the whole workflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import ColumnElement, select

from ..extensions import db
from ..models import ImagingRequest, ImagingTest, Patient, RequestEvent, User
from ..models._time import utcnow
from . import checks, numbers, states
from .checks import EARLIEST_DAY, LATEST_DAY, date_problem, parse_scheduled
from .errors import TransitionError, ValidationError, WorkflowError, WorklistRefused, WorklistUnwritable
from .reporting import NewImage, add_addendum, add_key_image, create_result, finalise_result, update_result
from .states import EDITABLE, TRANSITIONS, can, editable, request_changed

if TYPE_CHECKING:
    from ..worklists import WorklistFileData

__all__ = [
    "EARLIEST_DAY", "EDITABLE", "LATEST_DAY", "TRANSITIONS", "NewImage", "TransitionError", "ValidationError",
    "WorkflowError", "WorklistRefused", "WorklistUnwritable", "add_addendum", "add_key_image", "announce_waiting",
    "can", "cancel", "create_order", "create_result", "date_problem", "editable", "finalise_result",
    "not_editable_reason", "parse_scheduled", "request_changed", "scheduled_in_past", "submit", "update_request", "update_result", "waiting_without_file",
]

S = states.S

#: How far in the past a scheduled time may lie without asking "did you
#: mean it?": a walk-in booked for "now", typed a few minutes late, is not
#: a slip; a date days or years back usually is.
PAST_GRACE = timedelta(hours=1)


def scheduled_in_past(scheduled_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether ``scheduled_at`` (naive UTC) is more than :data:`PAST_GRACE`
    before now: the order and edit pages and the API then ask for a
    confirmation (a tick, ``confirm_past``) before saving it. Services and
    imports (GNU Health) take past times as they come: asking is for people."""
    return scheduled_at is not None and scheduled_at < (now or utcnow()) - PAST_GRACE


#: Fields an edit can change, in the order its history entry lists them.
CHANGED_FIELDS = ("scheduled_at", "requesting_physician", "urgent", "clinical_context", "comment")
SHORT_TEXT = 80


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHORT_TEXT else text[:SHORT_TEXT - 1] + "\u2026"


def _snapshot(req: ImagingRequest) -> dict[str, tuple[Any, Any]]:
    """Each field an edit can change as (what is compared, what its history
    records): the scheduled time as ISO naive UTC (shown in the clinic's
    zone when read), the physician by name as named then (compared by id),
    urgency as a bool (shown in words), texts shortened to a line (compared
    whole)."""
    doctor = req.requesting_physician
    return {
        "scheduled_at": (req.scheduled_at,
                         req.scheduled_at.isoformat(timespec="minutes") if req.scheduled_at else None),
        "requesting_physician": (doctor.id if doctor else None, doctor.display_name if doctor else None),
        "urgent": (bool(req.urgent), bool(req.urgent)),
        "clinical_context": (req.clinical_context or "", _short(req.clinical_context or "")),
        "comment": (req.comment or "", _short(req.comment or "")),
    }


def _changes(before: dict[str, tuple[Any, Any]], after: dict[str, tuple[Any, Any]]) -> list[dict[str, Any]]:
    return [{"field": name, "old": before[name][1], "new": after[name][1]}
            for name in CHANGED_FIELDS if before[name][0] != after[name][0]]


def _changes_note(changes: list[dict[str, Any]]) -> str:
    """The changes as one English line ("Field: old -> new; ..."), for the
    API's event ``note``; the pages read the structured ``changes``."""
    def value(name: str, v: Any) -> str:
        if name == "urgent":
            return "urgent" if v else "routine"
        if name == "scheduled_at" and v:
            from .. import clock

            return clock.to_local(datetime.fromisoformat(v)).strftime("%Y-%m-%d %H:%M")
        return str(v) if v not in (None, "") else "(none)"

    labels = {"scheduled_at": "Scheduled", "requesting_physician": "Requesting physician", "urgent": "Priority",
              "clinical_context": "Clinical context", "comment": "Comment"}
    return "; ".join(f"{labels[c['field']]}: {value(c['field'], c['old'])} -> {value(c['field'], c['new'])}"
                     for c in changes)


def _worklist_file(req: ImagingRequest, what: str = "") -> WorklistFileData:
    """The request's worklist file, built (rendered and encoded) before any
    state changes, or :class:`WorklistRefused` saying why it cannot be."""
    from ..worklists import UnencodableError, build_file

    what = what or _("Request %(accession)s (%(test)s)", accession=req.accession_number, test=req.test.name)
    try:
        return build_file(req)
    except UnencodableError as exc:
        raise WorklistRefused(_("%(what)s cannot be offered to the modality: %(reason)s", what=what, reason=str(exc)),
                              code="worklist_charset",
                              characters=exc.characters, template=exc.template,
                              accession_number=req.accession_number) from None
    except ValueError as exc:  # RenderError, DumpError: a broken template
        raise WorklistRefused(_("%(what)s cannot be offered to the modality: its worklist template does not "
                                "work: %(reason)s", what=what, reason=str(exc)), code="worklist_template",
                              accession_number=req.accession_number) from None


def _write_worklists(files: list[tuple[ImagingRequest, WorklistFileData]]) -> None:
    """Write the files of requests that are (or stay) live, in the
    transaction of their change: put back as they were unless it commits."""
    from ..worklists import writer

    for req, data in files:
        if not writer.is_live(req):
            continue
        try:
            writer.put(req, data)
        except OSError as exc:
            raise WorklistUnwritable(_("The worklist file could not be written (%(reason)s); nothing was changed.",
                                       reason=str(exc.strerror or exc))) from None


def create_order(patient: Patient, tests: Iterable[ImagingTest], *, user: User | None,
                 physician: User | None = None, urgent: bool = False, clinical_context: str = "",
                 comment: str = "", scheduled_at: datetime | None = None,
                 submit: bool = False) -> list[ImagingRequest]:
    """One request per test, sharing one order number; drafts unless ``submit``."""
    tests = list(tests)
    errors: dict[str, str] = {}
    if not tests:
        errors["tests"] = _("Choose at least one test.")
    if len({t.id for t in tests}) != len(tests):
        errors["tests"] = _("A test is chosen twice.")
    inactive = [t.code for t in tests if not t.active]
    if inactive:
        errors["tests"] = _("Test(s) no longer offered: %(codes)s.", codes=", ".join(inactive))
    clinical_context = checks.text(errors, "clinical_context", clinical_context, checks.TEXT_MAX)
    comment = checks.text(errors, "comment", comment, checks.TEXT_MAX)
    checks.physician(errors, physician)
    checks.plausible_date(errors, "scheduled_at", scheduled_at, _("The scheduled time"))
    if errors:
        raise ValidationError(errors)
    order_number = numbers.new_order_number()
    created: list[ImagingRequest] = []
    for test in tests:
        req = ImagingRequest(
            order_number=order_number, patient=patient, test=test, requesting_physician=physician,
            urgent=bool(urgent), clinical_context=clinical_context, comment=comment,
            scheduled_at=scheduled_at, state=S.DRAFT.value,
            accession_number=numbers.new_accession_number(), study_instance_uid=numbers.new_study_uid(),
            created_by_id=user.id if user else None,
        )
        req.events.append(RequestEvent(user_id=user.id if user else None, action="create",
                                       to_state=S.DRAFT.value, note=f"order {order_number}"))
        db.session.add(req)
        created.append(req)
    db.session.flush()
    if submit:
        # All or nothing: an order whose items cannot all be offered to the
        # modality is refused whole, and the form keeps what was typed.
        files = [(req, _worklist_file(req, _("The order of %(test)s", test=req.test.name))) for req in created]
        for req in created:
            states.transition(req, "submit", user)
        _write_worklists(files)
        db.session.flush()
    for req in created:
        states.announce(req, "submit" if submit else "create")
    return created


def update_request(req: ImagingRequest, *, user: User | None, physician: User | None,
                   urgent: bool, clinical_context: str, comment: str,
                   scheduled_at: datetime | None) -> ImagingRequest:
    if not editable(req):
        raise TransitionError(_("Request %(accession)s is %(state)s; it can no longer be edited.",
                                accession=req.accession_number, state=not_editable_reason(req)), state=req.state)
    errors: dict[str, str] = {}
    clinical_context = checks.text(errors, "clinical_context", clinical_context, checks.TEXT_MAX)
    comment = checks.text(errors, "comment", comment, checks.TEXT_MAX)
    checks.physician(errors, physician)
    checks.plausible_date(errors, "scheduled_at", scheduled_at, _("The scheduled time"))
    if errors:
        raise ValidationError(errors)
    states.hold_editable(req)  # in the database too: a result written at the same moment wins
    before = _snapshot(req)
    req.requesting_physician = physician
    req.urgent = bool(urgent)
    req.clinical_context = clinical_context
    req.comment = comment
    req.scheduled_at = scheduled_at
    from ..worklists import writer

    if writer.is_live(req):
        # The waiting item is rewritten with the edit, or the edit is refused:
        # never a saved edit that silently takes the item off the worklist.
        _write_worklists([(req, _worklist_file(req))])
    changes = _changes(before, _snapshot(req))
    if changes:  # a save that changed nothing leaves no "edit" entry
        req.events.append(RequestEvent(user_id=user.id if user else None, action="edit",
                                       from_state=req.state, to_state=req.state, changes=changes,
                                       note=_changes_note(changes)))
    db.session.flush()
    states.announce(req, "edit")
    return req


def not_editable_reason(req: ImagingRequest) -> str:
    """Why the order can no longer be changed, in the words of its page."""
    return _("reported") if states.has_result(req) and req.state_enum in EDITABLE else req.state_enum.word


def announce_waiting(condition: ColumnElement[bool]) -> int:
    """Tell receivers (the worklist files), once committed, that requested
    requests matching ``condition`` changed, after their patient or test
    was edited."""
    reqs = list(db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.state == S.REQUESTED.value, condition)))
    for req in reqs:
        states.announce(req, "edit")
    return len(reqs)


def waiting_without_file(condition: ColumnElement[bool]) -> list[ImagingRequest]:
    """Requested requests matching ``condition`` whose worklist file could
    not be written (after an edit of their patient or test rewrote them):
    the page that made the edit says so at once."""
    return list(db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.state == S.REQUESTED.value, ImagingRequest.worklist_problem != "", condition)
        .order_by(ImagingRequest.id)))


def submit(req: ImagingRequest, user: User | None) -> ImagingRequest:
    """draft -> requested, with its worklist file written in the same step:
    the file is rendered and encoded first, and a request whose file cannot
    be written stays a draft (:class:`WorklistRefused` says why)."""
    states.check("submit", req)
    data = _worklist_file(req)
    states.transition(req, "submit", user)
    _write_worklists([(req, data)])
    db.session.flush()
    states.announce(req, "submit")
    return req


def cancel(req: ImagingRequest, user: User | None, reason: str) -> ImagingRequest:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give a reason for cancelling.")})
    if len(reason) > checks.REASON_MAX:
        raise ValidationError({"reason": _("At most %(num)d characters.", num=checks.REASON_MAX)})
    states.transition(req, "cancel", user, note=reason)
    req.cancel_reason = reason
    db.session.flush()
    states.announce(req, "cancel")
    return req
