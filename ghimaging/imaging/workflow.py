"""The life of an imaging request and its result.

Every state change goes through this module, whether it comes from a page,
the JSON API, the CLI or a background job, so the rules live in one place:
draft -> requested -> done, and cancelled from draft or requested.
Each function commits once and records who did what in the request's events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import BinaryIO

from flask.signals import Namespace
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import (
    ImagingRequest,
    ImagingTest,
    Patient,
    ReportStyle,
    RequestEvent,
    RequestState,
    Result,
    ResultAddendum,
    ResultImage,
    User,
)
from ..models._time import utcnow
from ..permissions import Action
from . import images, numbers

S = RequestState

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[RequestState], RequestState]] = {
    "submit": (frozenset({S.DRAFT}), S.REQUESTED),
    "cancel": (frozenset({S.DRAFT, S.REQUESTED}), S.CANCELLED),
    "complete": (frozenset({S.REQUESTED}), S.DONE),
}
EDITABLE = frozenset({S.DRAFT, S.REQUESTED})

# The dates a clinic can mean for an appointment or a result. A slip such as
# 0001 or 9999 is never meant, and year 1 with a time-zone offset broke the
# conversion to clinic time (OverflowError, a 500).
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)

_signals = Namespace()
#: Sent after a request is committed in a new state or edited; receivers
#: (worklist files, GNU Health outbox) get ``request=`` and ``action=``.
request_changed = _signals.signal("request-changed")


class WorkflowError(Exception):
    """A change the rules do not allow; the message is safe to show."""


class TransitionError(WorkflowError):
    """The request is not in a state that allows this action (HTTP 409)."""


class ValidationError(WorkflowError):
    """Bad input for a change (HTTP 400/422); ``errors`` maps fields to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class WorklistRefused(ValidationError):
    """The request cannot become (or stay) ``requested`` because its worklist
    file cannot be written: a value the template's character set cannot
    hold (``code`` "worklist_charset", with ``characters`` and ``template``),
    or a template that does not render ("worklist_template"). Nothing was
    changed."""

    def __init__(self, message: str, *, code: str, characters: list[str] | None = None,
                 template: str = "", accession_number: str = ""):
        super().__init__({"worklist": message})
        self.message, self.code = message, code
        self.characters, self.template = characters or [], template
        self.accession_number = accession_number


@dataclass
class NewImage:
    stream: BinaryIO
    filename: str
    caption: str = ""


class WorklistUnwritable(WorkflowError):
    """The worklist folder refused the file (disk full, permissions): the
    change was not made (HTTP 503)."""


def can(action: str, req: ImagingRequest) -> bool:
    return req.state_enum in TRANSITIONS[action][0]


def _transition(req: ImagingRequest, action: str, user: User | None, note: str = "") -> None:
    allowed, target = TRANSITIONS[action]
    current = req.state_enum
    if current not in allowed:
        raise TransitionError(
            f"Request {req.accession_number} is {current.value}; it cannot be "
            f"{ {'submit': 'submitted', 'cancel': 'cancelled', 'complete': 'completed'}[action] } "
            f"(allowed from {', '.join(sorted(s.value for s in allowed))})."
        )
    if req.id is not None:
        # A conditional UPDATE, so two people acting at once cannot both pass
        # the check (cancel in one tab, submit in another).
        res = db.session.execute(
            update(ImagingRequest).where(ImagingRequest.id == req.id,
                                         ImagingRequest.state.in_([s.value for s in allowed]))
            .values(state=target.value).execution_options(synchronize_session=False))
        if res.rowcount != 1:
            db.session.rollback()
            db.session.refresh(req)
            raise TransitionError(f"Request {req.accession_number} was just changed by someone else; "
                                  f"it is now {req.state}.")
    req.state = target.value
    req.events.append(RequestEvent(user_id=user.id if user else None, action=action,
                                   from_state=current.value, to_state=target.value, note=note))


def _check_text(errors: dict[str, str], field: str, value: str, limit: int) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        errors[field] = f"At most {limit} characters."
    return value


def date_problem(value: date | datetime | None, what: str) -> str:
    """A sentence when ``value`` lies outside EARLIEST_DAY..LATEST_DAY, else ''."""
    if value is None:
        return ""
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        return f"{what} must be between {EARLIEST_DAY.year} and {LATEST_DAY.year}."
    return ""


def _check_date(errors: dict[str, str], field: str, value: date | datetime | None, what: str) -> None:
    problem = date_problem(value, what)
    if problem:
        errors[field] = problem


def parse_scheduled(text: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM`` in clinic local time, or with an offset (then
    converted to clinic local time); None for an empty text. Anything else,
    or a date outside the years above, is ValidationError on ``scheduled_at``."""
    if not text:
        return None
    usage = "Use YYYY-MM-DDTHH:MM (clinic local time)."
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError({"scheduled_at": usage}) from None
    problem = date_problem(when, "The scheduled time")
    if not problem and when.tzinfo:
        when = when.astimezone().replace(tzinfo=None)  # cannot overflow within the years allowed
        problem = date_problem(when, "The scheduled time")
    if problem:
        raise ValidationError({"scheduled_at": problem})
    return when


def _check_physician(errors: dict[str, str], physician: User | None) -> None:
    if physician is not None and not physician.can(Action.ORDER):
        errors["physician"] = "The requesting physician must be an active user with the physician role."


def _worklist_file(req: ImagingRequest, what: str = ""):
    """The request's worklist file, built (rendered and encoded) before any
    state changes, or :class:`WorklistRefused` saying why it cannot be."""
    from ..worklists import UnencodableError, build_file

    what = what or f"Request {req.accession_number} ({req.test.name})"
    try:
        return build_file(req)
    except UnencodableError as exc:
        raise WorklistRefused(f"{what} cannot be offered to the modality: {exc}", code="worklist_charset",
                              characters=exc.characters, template=exc.template,
                              accession_number=req.accession_number) from None
    except ValueError as exc:  # RenderError, DumpError: a broken template
        raise WorklistRefused(f"{what} cannot be offered to the modality: its worklist template does not "
                              f"work: {exc}", code="worklist_template",
                              accession_number=req.accession_number) from None


def _commit_with_worklists(files: list[tuple[ImagingRequest, object]]) -> None:
    """Write the files, then commit: a request is never ``requested``
    without its file. If a file or the commit fails, nothing stays: the
    transaction is rolled back and the files just written are removed."""
    from ..worklists import writer

    written: list[ImagingRequest] = []
    try:
        for req, data in files:
            if writer.is_live(req):
                writer.put(req, data, commit=False)
                written.append(req)
        db.session.commit()
    except OSError as exc:
        db.session.rollback()
        for req in written:
            writer.discard(req)
        raise WorklistUnwritable(f"The worklist file could not be written ({exc.strerror or exc}); "
                                 "nothing was changed.") from None
    except Exception:
        db.session.rollback()
        for req in written:
            writer.discard(req)
        raise


def create_order(patient: Patient, tests: Iterable[ImagingTest], *, user: User | None,
                 physician: User | None = None, urgent: bool = False, clinical_context: str = "",
                 comment: str = "", scheduled_at: datetime | None = None,
                 submit: bool = False) -> list[ImagingRequest]:
    """One request per test, sharing one order number; drafts unless ``submit``."""
    tests = list(tests)
    errors: dict[str, str] = {}
    if not tests:
        errors["tests"] = "Choose at least one test."
    if len({t.id for t in tests}) != len(tests):
        errors["tests"] = "A test is chosen twice."
    inactive = [t.code for t in tests if not t.active]
    if inactive:
        errors["tests"] = f"Test(s) no longer offered: {', '.join(inactive)}."
    clinical_context = _check_text(errors, "clinical_context", clinical_context, 4000)
    comment = _check_text(errors, "comment", comment, 4000)
    _check_physician(errors, physician)
    _check_date(errors, "scheduled_at", scheduled_at, "The scheduled time")
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
    files = []
    if submit:
        # All or nothing: an order whose items cannot all be offered to the
        # modality is refused whole, and the form keeps what was typed.
        db.session.flush()
        try:
            files = [(req, _worklist_file(req, f"The order of {req.test.name}")) for req in created]
        except WorklistRefused:
            db.session.rollback()
            raise
        for req in created:
            _transition(req, "submit", user)
    _commit_with_worklists(files)
    for req in created:
        request_changed.send(req, request=req, action="submit" if submit else "create")
    return created


def update_request(req: ImagingRequest, *, user: User | None, physician: User | None,
                   urgent: bool, clinical_context: str, comment: str,
                   scheduled_at: datetime | None) -> ImagingRequest:
    if req.state_enum not in EDITABLE:
        raise TransitionError(f"Request {req.accession_number} is {req.state}; it can no longer be edited.")
    errors: dict[str, str] = {}
    clinical_context = _check_text(errors, "clinical_context", clinical_context, 4000)
    comment = _check_text(errors, "comment", comment, 4000)
    _check_physician(errors, physician)
    _check_date(errors, "scheduled_at", scheduled_at, "The scheduled time")
    if errors:
        raise ValidationError(errors)
    req.requesting_physician = physician
    req.urgent = bool(urgent)
    req.clinical_context = clinical_context
    req.comment = comment
    req.scheduled_at = scheduled_at
    files = []
    from ..worklists import writer

    if writer.is_live(req):
        # The waiting item is rewritten with the edit, or the edit is refused:
        # never a saved edit that silently takes the item off the worklist.
        try:
            files = [(req, _worklist_file(req))]
        except WorklistRefused:
            db.session.rollback()
            raise
    req.events.append(RequestEvent(user_id=user.id if user else None, action="edit",
                                   from_state=req.state, to_state=req.state))
    _commit_with_worklists(files)
    request_changed.send(req, request=req, action="edit")
    return req


def announce_waiting(condition) -> int:
    """Tell receivers (the worklist files) that requested requests matching
    ``condition`` changed, after their patient or test was edited."""
    from sqlalchemy import select

    reqs = list(db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.state == S.REQUESTED.value, condition)))
    for req in reqs:
        request_changed.send(req, request=req, action="edit")
    return len(reqs)


def waiting_without_file(condition) -> list[ImagingRequest]:
    """Requested requests matching ``condition`` whose worklist file could
    not be written (after an edit of their patient or test rewrote them):
    the page that made the edit says so at once."""
    from sqlalchemy import select

    return list(db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.state == S.REQUESTED.value, ImagingRequest.worklist_problem != "", condition)
        .order_by(ImagingRequest.id)))


def submit(req: ImagingRequest, user: User | None) -> ImagingRequest:
    """draft -> requested, with its worklist file written in the same step:
    the file is rendered and encoded first, and a request whose file cannot
    be written stays a draft (:class:`WorklistRefused` says why)."""
    if not can("submit", req):
        _transition(req, "submit", user)  # raises with the standard message
    data = _worklist_file(req)
    _transition(req, "submit", user)
    _commit_with_worklists([(req, data)])
    request_changed.send(req, request=req, action="submit")
    return req


def cancel(req: ImagingRequest, user: User | None, reason: str) -> ImagingRequest:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason for cancelling."})
    if len(reason) > 2000:
        raise ValidationError({"reason": "At most 2000 characters."})
    _transition(req, "cancel", user, note=reason)
    req.cancel_reason = reason
    db.session.commit()
    request_changed.send(req, request=req, action="cancel")
    return req


def _check_result_fields(radiologist: User | None, report: str, report_style: str,
                         result_date: date | None = None) -> dict[str, str]:
    errors: dict[str, str] = {}
    _check_date(errors, "result_date", result_date, "The date of the result")
    if radiologist is not None and not radiologist.can(Action.REPORT):
        errors["radiologist"] = "The evaluating radiologist must be an active user with the radiologist role."
    if len(report or "") > 100_000:
        errors["report"] = "The report is too long (100,000 characters at most)."
    if report_style not in {s.value for s in ReportStyle}:
        errors["report_style"] = "Unknown report style."
    return errors


def _attach(result: Result, new_images: Iterable[NewImage], stored: list[str]) -> None:
    position = max((i.position for i in result.images), default=0)
    for img in new_images:
        if len(img.caption or "") > 500:
            raise images.ImageError(f"{img.filename}: the caption is longer than 500 characters.")
        saved = images.store(img.stream, img.filename)
        stored.append(saved.stored_name)
        position += 1
        result.images.append(ResultImage(
            stored_name=saved.stored_name, original_name=(img.filename or "")[:255],
            content_type=saved.content_type, caption=(img.caption or "").strip(),
            width=saved.width, height=saved.height, position=position,
        ))


def _commit_with_files(stored: list[str]) -> None:
    """Commit; if the database refuses, remove the files we just wrote so that
    no orphan image stays on disk."""
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        for name in stored:
            images.remove(name)
        raise


def create_result(req: ImagingRequest, user: User, *, radiologist: User | None, result_date: date,
                  report: str, report_style: str = ReportStyle.WITH_IMAGES.value,
                  new_images: Iterable[NewImage] = ()) -> Result:
    """Write the result of a requested request and close the request."""
    if req.result is not None:
        raise TransitionError(f"Request {req.accession_number} already has a result.")
    errors = _check_result_fields(radiologist, report, report_style, result_date)
    if errors:
        raise ValidationError(errors)
    if not can("complete", req):
        _transition(req, "complete", user)  # raises with the standard message
    result = Result(request=req, radiologist=radiologist, result_date=result_date,
                    report=(report or "").strip(), report_style=report_style, created_by_id=user.id)
    db.session.add(result)
    stored: list[str] = []
    try:
        _attach(result, new_images, stored)
    except images.ImageError as exc:
        db.session.rollback()
        for name in stored:
            images.remove(name)
        raise ValidationError({"images": str(exc)}) from None
    _transition(req, "complete", user)
    try:
        _commit_with_files(stored)
    except IntegrityError:  # another result was saved at the same moment
        raise TransitionError(f"Request {req.accession_number} already has a result.") from None
    request_changed.send(req, request=req, action="complete")
    return result


def update_result(result: Result, user: User, *, radiologist: User | None, result_date: date,
                  report: str, report_style: str, new_images: Iterable[NewImage] = (),
                  captions: dict[int, str] | None = None, remove_images: Iterable[int] = ()) -> Result:
    if result.is_final:
        raise TransitionError("This result is final; add an addendum instead.")
    errors = _check_result_fields(radiologist, report, report_style, result_date)
    if errors:
        raise ValidationError(errors)
    result.radiologist = radiologist
    result.result_date = result_date
    result.report = (report or "").strip()
    result.report_style = report_style
    for img in result.images:
        if captions and img.id in captions:
            img.caption = captions[img.id].strip()[:500]
    doomed = [img for img in result.images if img.id in set(remove_images)]
    for img in doomed:
        result.images.remove(img)
    stored: list[str] = []
    try:
        _attach(result, new_images, stored)
    except images.ImageError as exc:
        db.session.rollback()
        for name in stored:
            images.remove(name)
        raise ValidationError({"images": str(exc)}) from None
    result.request.events.append(RequestEvent(user_id=user.id, action="result edited",
                                              from_state=result.request.state, to_state=result.request.state))
    _commit_with_files(stored)
    for img in doomed:
        images.remove(img.stored_name)
    return result


def finalise_result(result: Result, user: User) -> Result:
    if result.is_final:
        raise TransitionError("This result is already final.")
    if not result.report.strip():
        raise ValidationError({"report": "Write the report before finalising it."})
    result.finalised_at = utcnow()
    result.finalised_by_id = user.id
    if result.radiologist is None and user.can(Action.REPORT):
        result.radiologist = user
    result.request.events.append(RequestEvent(user_id=user.id, action="result finalised",
                                              from_state=result.request.state, to_state=result.request.state))
    db.session.commit()
    request_changed.send(result.request, request=result.request, action="finalise")
    return result


def add_addendum(result: Result, user: User, text: str) -> ResultAddendum:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "The addendum is empty."})
    if len(text) > 20_000:
        raise ValidationError({"text": "At most 20,000 characters."})
    if not result.is_final:
        raise TransitionError("Addenda are for final results; edit the report instead.")
    add = ResultAddendum(result=result, text=text, author_id=user.id)
    db.session.add(add)
    result.request.events.append(RequestEvent(user_id=user.id, action="addendum",
                                              from_state=result.request.state, to_state=result.request.state))
    db.session.commit()
    return add


def add_key_image(result: Result, user: User, server, instance_id: str, caption: str = "") -> ResultImage:
    """The instance as the preview showed it (PNG, same window), stored with the report."""
    import io

    from ..orthanc.client import OrthancError
    from ..orthanc.rendering import display_png
    from ..orthanc.servers import client_for

    if result.is_final:
        raise TransitionError("This result is final; key images can no longer be added.")
    if len(caption or "") > 500:
        raise ValidationError({"caption": "At most 500 characters."})
    from ..orthanc.matching import studies_of

    try:
        with client_for(server) as client:
            parent = str(client.instance(instance_id).get("ParentSeries", ""))
            linked = {se.orthanc_id for link in studies_of(result.request) if link.study.server_id == server.id
                      for se in link.study.series}
            if parent not in linked:
                raise ValidationError({"images": "This image is not from a study linked to this request."})
            data = display_png(client, instance_id)  # the picture the preview showed
    except OrthancError as exc:
        raise ValidationError({"images": f"Orthanc could not render the image: {exc}"}) from None
    stored: list[str] = []
    try:
        _attach(result, [NewImage(io.BytesIO(data), f"{instance_id}.png", caption or "")], stored)
    except images.ImageError as exc:
        db.session.rollback()
        raise ValidationError({"images": str(exc)}) from None
    result.request.events.append(RequestEvent(user_id=user.id, action="key image", from_state=result.request.state,
                                              to_state=result.request.state, note=f"instance {instance_id}"))
    _commit_with_files(stored)
    return result.images[-1]
