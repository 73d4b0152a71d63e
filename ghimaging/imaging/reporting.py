"""Results: written for a requested request (preliminary: the request
stays requested), edited until final, finalised (which closes the request:
done; the rule is :mod:`.states`'), amended by addenda, illustrated by report images
and key images copied from Orthanc.

One service for the page and the API: :func:`create_result` (with
``final`` for the API's write-and-finalise, one transaction). Nothing here
commits: the caller does, once; images written to disk for a change that
is not committed are removed again (see :mod:`.effects`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import ImagingRequest, ReportStyle, RequestEvent, Result, ResultAddendum, ResultImage, User
from ..models._time import utcnow
from ..permissions import Action
from . import checks, effects, images, states
from .errors import TransitionError, ValidationError

if TYPE_CHECKING:
    from ..models import OrthancServer
    from ..orthanc.rendering import View


@dataclass
class NewImage:
    stream: BinaryIO
    filename: str
    caption: str = ""


@dataclass
class _Stored:
    saved: images.StoredImage
    filename: str
    caption: str


def _store(new_images: Iterable[NewImage]) -> list[_Stored]:
    """Check every caption, then store every image (removed again unless the
    transaction commits); on a bad image the ones stored so far are removed
    at once and nothing is added to the session."""
    todo = [(img, checks.caption(img.caption, img.filename)) for img in new_images]
    stored: list[_Stored] = []
    try:
        for img, caption in todo:
            stored.append(_Stored(images.store(img.stream, img.filename), img.filename, caption))
    except images.ImageError as exc:
        for s in stored:
            images.remove(s.saved.stored_name)
        raise ValidationError({"images": str(exc)}) from None
    for s in stored:
        effects.undo_unless_committed(partial(images.remove, s.saved.stored_name))
    return stored


def _attach(result: Result, stored: list[_Stored]) -> None:
    position = max((i.position for i in result.images), default=0)
    for s in stored:
        position += 1
        result.images.append(ResultImage(
            stored_name=s.saved.stored_name, original_name=(s.filename or "")[:255],
            content_type=s.saved.content_type, caption=s.caption,
            width=s.saved.width, height=s.saved.height, position=position,
        ))


def _event(result: Result, user: User, action: str, note: str = "") -> None:
    req = result.request
    req.events.append(RequestEvent(user_id=user.id, action=action, from_state=req.state, to_state=req.state,
                                   note=note))


def create_result(req: ImagingRequest, user: User, *, radiologist: User | None, result_date: date,
                  report: str, report_style: str = ReportStyle.WITH_IMAGES.value,
                  new_images: Iterable[NewImage] = (), final: bool = False) -> Result:
    """Write the (preliminary) result of a requested request, which stays
    requested; ``final`` finalises it in the same transaction (checked
    before anything is written), which closes the request."""
    if final and not (report or "").strip():
        raise ValidationError({"report": _("Write the report before finalising it.")})
    if req.result is not None:
        raise TransitionError(_("Request %(number)s already has a result.", number=req.accession_number),
                              state=req.state)
    errors = checks.result_fields(radiologist, report, report_style, result_date)
    if errors:
        raise ValidationError(errors)
    states.check("complete", req)
    states.claim_for_result(req)  # in the database too: a cancel at the same moment loses
    stored = _store(new_images)
    result = Result(request=req, radiologist=radiologist, result_date=result_date,
                    report=(report or "").strip(), report_style=report_style, created_by_id=user.id)
    db.session.add(result)
    _attach(result, stored)
    req.events.append(RequestEvent(user_id=user.id, action="result written", from_state=req.state,
                                   to_state=req.state, note="preliminary"))
    try:
        db.session.flush()
    except IntegrityError:  # another result was saved at the same moment
        db.session.rollback()
        raise TransitionError(_("Request %(number)s already has a result.", number=req.accession_number),
                              state=req.state) from None
    if final:
        finalise_result(result, user)
    else:
        states.announce(req, "result")  # reported: off the worklist (worklists.writer.is_live)
    return result


def update_result(result: Result, user: User, *, radiologist: User | None, result_date: date,
                  report: str, report_style: str, new_images: Iterable[NewImage] = (),
                  captions: dict[int, str] | None = None, remove_images: Iterable[int] = ()) -> Result:
    if result.is_final:
        raise TransitionError(_("This result is final; add an addendum instead."), state=result.request.state)
    errors = checks.result_fields(radiologist, report, report_style, result_date)
    if errors:
        raise ValidationError(errors)
    captions = {img.id: checks.caption(captions[img.id], img.original_name or _("An image"))
                for img in result.images if captions and img.id in captions}
    stored = _store(new_images)
    result.radiologist = radiologist
    result.result_date = result_date
    result.report = (report or "").strip()
    result.report_style = report_style
    for img in result.images:
        if img.id in captions:
            img.caption = captions[img.id]
    doomed = [img for img in result.images if img.id in set(remove_images)]
    for img in doomed:
        result.images.remove(img)
        effects.after_commit(partial(images.remove, img.stored_name))
    _attach(result, stored)
    _event(result, user, "result edited")
    db.session.flush()
    return result


def finalise_result(result: Result, user: User) -> Result:
    if result.is_final:
        raise TransitionError(_("This result is already final."), state=result.request.state)
    if not result.report.strip():
        raise ValidationError({"report": _("Write the report before finalising it.")})
    req = result.request
    if req.state_enum is states.S.CANCELLED:  # never a final report on a cancelled order
        raise TransitionError(_("Request %(number)s is cancelled; its result cannot be finalised.",
                                number=req.accession_number),
                              state=req.state)
    if states.can("complete", req):  # a request closed before (by an older rule) stays as it is
        states.transition(req, "complete", user)
        # Flushed first, so that GNU Health's outbox sends the request's
        # change before its result (as when a result closed the request).
        db.session.flush()
    result.finalised_at = utcnow()
    result.finalised_by_id = user.id
    if result.radiologist is None and user.can(Action.REPORT):
        result.radiologist = user
    _event(result, user, "result finalised")
    db.session.flush()
    states.announce(req, "finalise")
    return result


def add_addendum(result: Result, user: User, text: str) -> ResultAddendum:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": _("The addendum is empty.")})
    if len(text) > checks.ADDENDUM_MAX:
        raise ValidationError({"text": _("At most %(limit)s characters.", limit="20,000")})
    if not result.is_final:
        raise TransitionError(_("Addenda are for final results; edit the report instead."),
                              state=result.request.state)
    add = ResultAddendum(result=result, text=text, author_id=user.id)
    db.session.add(add)
    _event(result, user, "addendum")
    db.session.flush()
    return add


def add_key_image(result: Result, user: User, server: OrthancServer, instance_id: str,
                  caption: str = "", view: View | None = None) -> ResultImage:
    """The instance as the preview showed it (PNG, same window), or, from the
    viewer, exactly ``view`` (its frame and window), stored with the report."""
    from ..orthanc.client import OrthancError
    from ..orthanc.matching import studies_of
    from ..orthanc.rendering import display_png, frame_png
    from ..orthanc.servers import client_for

    if result.is_final:
        raise TransitionError(_("This result is final; key images can no longer be added."),
                              state=result.request.state)
    caption = checks.caption(caption, _("The key image"))
    try:
        with client_for(server) as client:
            parent = str(client.instance(instance_id).get("ParentSeries", ""))
            linked = {se.orthanc_id for link in studies_of(result.request) if link.study.server_id == server.id
                      for se in link.study.series}
            if parent not in linked:
                raise ValidationError({"images": _("This image is not from a study linked to this request.")})
            if view is not None and view.instance_id == instance_id:
                data = frame_png(client, view)  # what the viewer shows
            else:
                data = display_png(client, instance_id)  # the picture the preview showed
    except OrthancError as exc:
        raise ValidationError({"images": _("Orthanc could not render the image: %(reason)s", reason=exc)}) from None
    _attach(result, _store([NewImage(io.BytesIO(data), f"{instance_id}.png", caption)]))
    _event(result, user, "key image", note=f"instance {instance_id}")
    db.session.flush()
    return result.images[-1]
