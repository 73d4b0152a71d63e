"""Pages for imaging requests: the dashboard, the lists, ordering, editing,
submitting and cancelling. The result pages are in :mod:`.result_routes`.

Each view parses its form, calls one service (:mod:`.ordering`,
:mod:`.workflow`), commits once and redirects; a refused change is said at
its field, with nothing of it kept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from .. import clock
from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..catalog import service as catalog
from ..extensions import db
from ..models import ImagingRequest, Patient, Role
from ..patients import service as patients
from ..permissions import Action
from ..querytools import bounded_int
from ..ui import paginate_by_id
from . import ordering, people, progress, queries, queues, workflow
from .forms import CancelForm, EditRequestForm, OrderForm

bp = Blueprint("imaging", __name__)


def scheduled(form: OrderForm | EditRequestForm) -> datetime | None:
    """What was typed (the clinic's wall clock) as the UTC instant stored."""
    if not form.scheduled_date.data:
        return None
    t = form.scheduled_time.data or datetime.min.time()
    return clock.to_utc(datetime.combine(form.scheduled_date.data, t))


def step(change: Callable[[], object], done: str, refused: Callable[[str], str] | None = None) -> bool:
    """One button's change: call the service, then commit and say ``done``;
    or roll back and say why not (``refused`` puts the reason in its own
    translated sentence). True if it was made."""
    try:
        change()
    except workflow.WorkflowError as exc:
        db.session.rollback()
        flash(refused(exc.message) if refused else exc.message, "error")
        return False
    db.session.commit()
    flash(done, "success")
    return True


def field_errors(form: FlaskForm, exc: workflow.ValidationError, default: str) -> None:
    """The service's field errors at the form's fields (``images`` at the
    upload slots); the transaction is rolled back, so nothing of it stays."""
    db.session.rollback()
    for name, message in exc.errors.items():
        name = "new_images" if name == "images" else name
        target: Any = getattr(form, name, None) or getattr(form, default)
        if hasattr(target, "errors") and isinstance(target.errors, list):
            target.errors.append(message)
        else:
            flash(message, "error")


@bp.app_template_global("progress")
def _progress(req: ImagingRequest) -> progress.Progress:
    """The state a request shows, in every template and macro."""
    return progress.of(req)


@bp.app_context_processor
def _queue_helpers() -> dict[str, object]:
    """``queue_counts()`` for the navigation (counted only when the page asks)."""
    return {"queue_counts": _nav_counts}


def _nav_counts() -> dict[str, int]:
    if not current_user.is_authenticated or current_user.must_change_password:
        return {}
    return queues.counts(current_user)


@bp.route("/")
@requires(Action.VIEW)
def dashboard() -> ResponseReturnValue:
    page = queues.start_page(current_user)
    counts: dict[str, int] = {}
    urgent: list[ImagingRequest] = []
    recent: list[ImagingRequest] = []
    if not any(k in page for k in ("technologist", "radiologist", "physician")):
        counts = {state: n for state, n in db.session.execute(queries.state_counts())}
        urgent = list(db.session.scalars(queries.request_list("requested")
                                         .where(ImagingRequest.urgent.is_(True)).limit(10)))
        recent = list(db.session.scalars(queries.request_list("requested").limit(10)))
    html = render_template("imaging/dashboard.html", page=page, counts=counts, urgent=urgent, recent=recent)
    if "physician" in page:
        queues.mark_seen(current_user, page["now"])  # what was new up to the moment the page read
        db.session.commit()
    return html


@bp.route("/requests")
@requires(Action.VIEW)
def request_list() -> ResponseReturnValue:
    state = request.args.get("state", "requested")
    if state not in queries.TABS:
        state = "all"
    q = request.args.get("q", "")
    page = paginate_by_id(queries.request_list(state, q), ImagingRequest.id)
    return render_template("imaging/requests.html", page=page, state=state, q=q, tabs=queries.TABS)


@bp.route("/requests/new", methods=["GET", "POST"])
@requires(Action.ORDER)
def new_order() -> ResponseReturnValue:
    form = OrderForm()
    tests = catalog.active_tests()
    form.tests.choices = [(t.id, f"{t.modality.code} · {t.name}") for t in tests]
    form.physician.choices = people.choices(Role.PHYSICIAN)
    patient = None
    worklist_error = ""
    if request.method == "GET":
        pid = bounded_int(request.args.get("patient_id"))
        patient = db.session.get(Patient, pid) if pid else None
        if patient:
            form.patient.data = patient.puid
        if (me := people.or_self(None, current_user, Role.PHYSICIAN)) is not None:
            form.physician.data = me.id  # the one "nobody named: yourself" rule
    if form.validate_on_submit():
        try:
            order = ordering.Order(
                ordering.find_patient(form.patient.data), ordering.tests_by_id(form.tests.data, tests),
                physician=people.by_id(form.physician.data), urgent=form.urgent.data,
                clinical_context=form.clinical_context.data or "", comment=form.comment.data or "",
                scheduled_at=scheduled(form), submit=request.form.get("action") == "submit")
            created = ordering.place(order, current_user)
        except workflow.WorklistRefused as exc:
            db.session.rollback()
            worklist_error = exc.message
        except workflow.ValidationError as exc:
            field_errors(form, exc, "tests")
        else:
            db.session.commit()
            flash(ordering.summary(created), "success")
            for warning in order.warnings:
                flash(warning, "info")
            if len(created) == 1:
                return redirect(url_for("imaging.view_request", request_id=created[0].id))
            return redirect(url_for("patients.view", patient_id=order.patient.id))
    if form.patient.data and patient is None:
        patient = patients.by_puid(form.patient.data)
    status = 400 if request.method == "POST" else 200
    return render_template("imaging/order_form.html", form=form, patient=patient, tests=tests,
                           worklist_error=worklist_error), status


def _get_request(request_id: int) -> ImagingRequest:
    return db.get_or_404(ImagingRequest, request_id)


def _request_page(req: ImagingRequest, cancel_form: CancelForm) -> str:
    from ..orthanc import matching, servers
    from ..worklists import preview

    siblings = db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.order_number == req.order_number, ImagingRequest.id != req.id)).all()
    studies = [(link, servers.viewer_links(link.study.server, link.study)) for link in matching.studies_of(req)]
    return render_template("imaging/request.html", req=req, siblings=siblings, cancel_form=cancel_form,
                           action_form=EmptyForm(), state_allows=workflow.can, editable=workflow.editable,
                           worklist=preview(req),
                           studies=studies)


@bp.route("/requests/<int:request_id>")
@requires(Action.VIEW)
def view_request(request_id: int) -> ResponseReturnValue:
    return _request_page(_get_request(request_id), CancelForm())


@bp.route("/requests/<int:request_id>/edit", methods=["GET", "POST"])
@requires(Action.ORDER)
def edit_request(request_id: int) -> ResponseReturnValue:
    req = _get_request(request_id)
    if not workflow.editable(req):
        flash(_("Request %(number)s is %(reason)s; it can no longer be edited.", number=req.accession_number,
                reason=workflow.not_editable_reason(req)), "error")
        return redirect(url_for("imaging.view_request", request_id=req.id))
    form = EditRequestForm(obj=req)
    form.physician.choices = people.choices(Role.PHYSICIAN)
    if request.method == "GET":
        form.physician.data = req.requesting_physician_id or 0
        if req.scheduled_at:
            local = clock.to_local(req.scheduled_at)
            form.scheduled_date.data = local.date()
            form.scheduled_time.data = local.time()
    worklist_error = ""
    if form.validate_on_submit():
        try:
            workflow.update_request(req, user=current_user, physician=people.by_id(form.physician.data),
                                    urgent=form.urgent.data, clinical_context=form.clinical_context.data or "",
                                    comment=form.comment.data or "", scheduled_at=scheduled(form))
        except workflow.WorklistRefused as exc:
            db.session.rollback()
            worklist_error = exc.message
        except workflow.ValidationError as exc:
            field_errors(form, exc, "comment")
        except workflow.TransitionError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Request saved."), "success")
            return redirect(url_for("imaging.view_request", request_id=req.id))
    status = 400 if request.method == "POST" else 200
    return render_template("imaging/request_edit.html", form=form, req=req, worklist_error=worklist_error), status


@bp.route("/requests/<int:request_id>/submit", methods=["POST"])
@requires(Action.ORDER)
def submit_request(request_id: int) -> ResponseReturnValue:
    req = _get_request(request_id)
    number = req.accession_number
    if step(lambda: workflow.submit(req, current_user), _("Request %(number)s submitted.", number=number),
            lambda reason: _("Not submitted: %(reason)s", reason=reason)):
        for warning in ordering.worklist_warnings([req]):
            flash(warning, "info")
    return redirect(url_for("imaging.view_request", request_id=req.id))


@bp.route("/requests/<int:request_id>/cancel", methods=["POST"])
@requires(Action.ORDER)
def cancel_request(request_id: int) -> ResponseReturnValue:
    req = _get_request(request_id)
    form = CancelForm()
    number = req.accession_number
    if form.validate_on_submit():
        if step(lambda: workflow.cancel(req, current_user, form.reason.data or ""),
                _("Request %(number)s cancelled.", number=number)):
            return redirect(url_for("imaging.view_request", request_id=req.id))
    else:
        for errs in form.errors.values():
            for e in errs:
                flash(str(e), "error")
    return _request_page(req, form), 400
