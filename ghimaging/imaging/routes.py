from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_from_directory, url_for
from flask_login import current_user
from sqlalchemy import select

from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..catalog import service as catalog
from ..extensions import db
from ..models import ImagingRequest, Patient, Result, Role, User, UserRole
from ..patients import service as patients
from ..permissions import Action
from ..querytools import bounded_int
from ..ui import paginate_by_id
from . import images, queries, workflow
from .forms import AddendumForm, CancelForm, EditRequestForm, OrderForm, ResultForm

bp = Blueprint("imaging", __name__)


def users_with_role(role: Role) -> list[User]:
    return list(db.session.scalars(
        select(User).join(UserRole).where(UserRole.role == role.value, User.active.is_(True))
        .order_by(User.full_name, User.username)
    ))


def _user_choices(role: Role) -> list[tuple[int, str]]:
    return [(0, "— none —")] + [(u.id, u.display_name) for u in users_with_role(role)]


def _scheduled(form) -> datetime | None:
    if not form.scheduled_date.data:
        return None
    t = form.scheduled_time.data or datetime.min.time()
    return datetime.combine(form.scheduled_date.data, t)


def _field_errors(form, exc: workflow.ValidationError, default: str) -> None:
    for field, message in exc.errors.items():
        field = "new_images" if field == "images" else field
        target = getattr(form, field, None) or getattr(form, default)
        if hasattr(target, "errors") and isinstance(target.errors, list):
            target.errors.append(message)
        else:
            flash(message, "error")


@bp.route("/")
@requires(Action.VIEW)
def dashboard():
    counts = dict(db.session.execute(queries.state_counts()).all())
    urgent = db.session.scalars(queries.request_list("requested").where(ImagingRequest.urgent.is_(True)).limit(10)).all()
    recent = db.session.scalars(queries.request_list("requested").limit(10)).all()
    return render_template("imaging/dashboard.html", counts=counts, urgent=urgent, recent=recent)


@bp.route("/requests")
@requires(Action.VIEW)
def request_list():
    state = request.args.get("state", "requested")
    if state not in queries.TABS:
        state = "all"
    q = request.args.get("q", "")
    page = paginate_by_id(queries.request_list(state, q), ImagingRequest.id)
    return render_template("imaging/requests.html", page=page, state=state, q=q, tabs=queries.TABS)


@bp.route("/requests/new", methods=["GET", "POST"])
@requires(Action.ORDER)
def new_order():
    form = OrderForm()
    tests = catalog.active_tests()
    form.tests.choices = [(t.id, f"{t.modality.code} · {t.name}") for t in tests]
    form.physician.choices = _user_choices(Role.PHYSICIAN)
    patient = None
    worklist_error = ""
    if request.method == "GET":
        pid = bounded_int(request.args.get("patient_id"))
        patient = db.session.get(Patient, pid) if pid else None
        if patient:
            form.patient.data = patient.puid
        if Role.PHYSICIAN in current_user.roles:
            form.physician.data = current_user.id
    if form.validate_on_submit():
        patient = patients.by_puid(form.patient.data)
        if patient is None:
            form.patient.errors.append("No patient with this PUID. Pick one from the list, or register the patient first.")
        else:
            chosen = [t for t in tests if t.id in set(form.tests.data)]
            physician = db.session.get(User, form.physician.data) if form.physician.data else None
            try:
                created = workflow.create_order(
                    patient, chosen, user=current_user, physician=physician, urgent=form.urgent.data,
                    clinical_context=form.clinical_context.data or "", comment=form.comment.data or "",
                    scheduled_at=_scheduled(form), submit=request.form.get("action") == "submit",
                )
            except workflow.WorklistRefused as exc:
                worklist_error = exc.message
                patient = patients.by_puid(form.patient.data)
            except workflow.ValidationError as exc:
                _field_errors(form, exc, "tests")
            else:
                verb = "submitted" if created[0].state == "requested" else "saved as draft"
                flash(f"Order {created[0].order_number}: {len(created)} request(s) {verb}.", "success")
                _flash_worklist_warnings(created)
                if len(created) == 1:
                    return redirect(url_for("imaging.view_request", request_id=created[0].id))
                return redirect(url_for("patients.view", patient_id=patient.id))
    elif form.patient.data and patient is None:
        patient = patients.by_puid(form.patient.data)
    status = 400 if request.method == "POST" else 200
    return render_template("imaging/order_form.html", form=form, patient=patient, tests=tests,
                           worklist_error=worklist_error), status


def _flash_worklist_warnings(reqs) -> None:
    """Values cut to their VR length, a UTF-8 fallback: said at once, and
    kept on the request page."""
    from ..worklists import writer

    for req in reqs:
        if writer.is_live(req):
            for warning in _worklist(req).warnings:
                flash(f"{req.accession_number}: {warning}", "info")


def _get_request(request_id: int) -> ImagingRequest:
    return db.get_or_404(ImagingRequest, request_id)


@bp.route("/requests/<int:request_id>")
@requires(Action.VIEW)
def view_request(request_id: int):
    req = _get_request(request_id)
    siblings = db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.order_number == req.order_number, ImagingRequest.id != req.id)).all()
    return render_template("imaging/request.html", req=req, siblings=siblings, cancel_form=CancelForm(),
                           action_form=EmptyForm(), state_allows=workflow.can, worklist=_worklist(req),
                           studies=_studies(req))


def _studies(req):
    from ..orthanc import matching, servers

    return [(link, servers.viewer_links(link.study.server, link.study)) for link in matching.studies_of(req)]


def _worklist(req):
    from ..worklists import preview

    return preview(req)


@bp.route("/requests/<int:request_id>/edit", methods=["GET", "POST"])
@requires(Action.ORDER)
def edit_request(request_id: int):
    req = _get_request(request_id)
    if req.state_enum not in workflow.EDITABLE:
        flash(f"Request {req.accession_number} is {req.state}; it can no longer be edited.", "error")
        return redirect(url_for("imaging.view_request", request_id=req.id))
    form = EditRequestForm(obj=req)
    form.physician.choices = _user_choices(Role.PHYSICIAN)
    if request.method == "GET":
        form.physician.data = req.requesting_physician_id or 0
        if req.scheduled_at:
            form.scheduled_date.data = req.scheduled_at.date()
            form.scheduled_time.data = req.scheduled_at.time()
    worklist_error = ""
    if form.validate_on_submit():
        physician = db.session.get(User, form.physician.data) if form.physician.data else None
        try:
            workflow.update_request(req, user=current_user, physician=physician, urgent=form.urgent.data,
                                    clinical_context=form.clinical_context.data or "",
                                    comment=form.comment.data or "", scheduled_at=_scheduled(form))
        except workflow.WorklistRefused as exc:
            worklist_error = exc.message
        except workflow.ValidationError as exc:
            _field_errors(form, exc, "comment")
        except workflow.TransitionError as exc:
            flash(str(exc), "error")
        else:
            flash("Request saved.", "success")
            return redirect(url_for("imaging.view_request", request_id=req.id))
    status = 400 if request.method == "POST" else 200
    return render_template("imaging/request_edit.html", form=form, req=req, worklist_error=worklist_error), status


@bp.route("/requests/<int:request_id>/submit", methods=["POST"])
@requires(Action.ORDER)
def submit_request(request_id: int):
    req = _get_request(request_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        workflow.submit(req, current_user)
    except workflow.WorklistRefused as exc:
        flash(f"Not submitted: {exc.message}", "error")
        return redirect(url_for("imaging.view_request", request_id=req.id))
    except workflow.WorkflowError as exc:
        flash(str(exc), "error")
        return redirect(url_for("imaging.view_request", request_id=req.id))
    flash(f"Request {req.accession_number} submitted.", "success")
    _flash_worklist_warnings([req])
    return redirect(url_for("imaging.view_request", request_id=req.id))


@bp.route("/requests/<int:request_id>/cancel", methods=["POST"])
@requires(Action.ORDER)
def cancel_request(request_id: int):
    req = _get_request(request_id)
    form = CancelForm()
    if form.validate_on_submit():
        try:
            workflow.cancel(req, current_user, form.reason.data)
        except workflow.WorkflowError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Request {req.accession_number} cancelled.", "success")
            return redirect(url_for("imaging.view_request", request_id=req.id))
    else:
        for errs in form.errors.values():
            for e in errs:
                flash(e, "error")
    siblings = db.session.scalars(select(ImagingRequest).where(
        ImagingRequest.order_number == req.order_number, ImagingRequest.id != req.id)).all()
    return render_template("imaging/request.html", req=req, siblings=siblings, cancel_form=form,
                           action_form=EmptyForm(), state_allows=workflow.can, worklist=_worklist(req),
                           studies=_studies(req)), 400


# -- results ----------------------------------------------------------------

def _new_images(form: ResultForm) -> list[workflow.NewImage]:
    out = []
    for slot in form.new_images:
        f = slot.form.file.data
        if f and getattr(f, "filename", ""):
            out.append(workflow.NewImage(f.stream, f.filename, slot.form.caption.data or ""))
    return out


@bp.route("/requests/<int:request_id>/result", methods=["GET", "POST"])
@requires(Action.REPORT)
def new_result(request_id: int):
    req = _get_request(request_id)
    if req.result is not None:
        return redirect(url_for("imaging.view_result", result_id=req.result.id))
    if not workflow.can("complete", req):
        flash(f"Request {req.accession_number} is {req.state}; only a requested request can get a result.", "error")
        return redirect(url_for("imaging.view_request", request_id=req.id))
    form = ResultForm()
    form.radiologist.choices = _user_choices(Role.RADIOLOGIST)
    if request.method == "GET":
        form.result_date.data = date.today()
        if Role.RADIOLOGIST in current_user.roles:
            form.radiologist.data = current_user.id
    if form.validate_on_submit():
        rad = db.session.get(User, form.radiologist.data) if form.radiologist.data else None
        try:
            result = workflow.create_result(req, current_user, radiologist=rad, result_date=form.result_date.data,
                                            report=form.report.data or "", report_style=form.report_style.data,
                                            new_images=_new_images(form))
        except workflow.ValidationError as exc:
            _field_errors(form, exc, "report")
        except workflow.TransitionError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Result saved; request {req.accession_number} is done.", "success")
            return redirect(url_for("imaging.view_result", result_id=result.id))
    status = 400 if request.method == "POST" else 200
    return render_template("imaging/result_form.html", form=form, req=req, result=None), status


@bp.route("/results/<int:result_id>")
@requires(Action.VIEW)
def view_result(result_id: int):
    result = db.get_or_404(Result, result_id)
    return render_template("imaging/result.html", result=result, req=result.request,
                           addendum_form=AddendumForm(), action_form=EmptyForm(),
                           studies=_result_studies(result))


def _result_studies(result):
    """Linked studies with their series and, for each series, the instances
    fetched from Orthanc now (instances are not mirrored)."""
    from ..orthanc import instances

    out = []
    for link, viewers in _studies(result.request):
        series = [(se, instances.of_series(link.study.server, se)) for se in link.study.series]
        out.append((link, viewers, series))
    return out


@bp.route("/results/<int:result_id>/key-images", methods=["POST"])
@requires(Action.REPORT)
def add_key_image(result_id: int):
    """Copy an instance's rendered image from Orthanc into the result."""
    from ..models import OrthancServer
    from ..orthanc import instances
    from ..orthanc.client import deadline

    result = db.get_or_404(Result, result_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    server = db.session.get(OrthancServer, request.form.get("server_id", type=int) or 0)
    instance_id = request.form.get("instance_id", "")
    if server is None or not instances.valid_id(instance_id):
        abort(404)
    try:
        with deadline(instances.setting("ORTHANC_PAGE_DEADLINE")):  # the radiologist waits
            workflow.add_key_image(result, current_user, server, instance_id, request.form.get("caption", ""))
    except workflow.WorkflowError as exc:
        flash(str(exc), "error")
    else:
        flash("Key image added to the report.", "success")
    return redirect(url_for("imaging.view_result", result_id=result.id) + "#images")


@bp.route("/results/<int:result_id>/edit", methods=["GET", "POST"])
@requires(Action.REPORT)
def edit_result(result_id: int):
    result = db.get_or_404(Result, result_id)
    if result.is_final:
        flash("This result is final; add an addendum instead.", "error")
        return redirect(url_for("imaging.view_result", result_id=result.id))
    form = ResultForm(obj=result)
    form.radiologist.choices = _user_choices(Role.RADIOLOGIST)
    if request.method == "GET":
        form.radiologist.data = result.radiologist_id or 0
    if form.validate_on_submit():
        rad = db.session.get(User, form.radiologist.data) if form.radiologist.data else None
        captions = {img.id: request.form.get(f"caption-{img.id}", img.caption) for img in result.images}
        remove = [img.id for img in result.images if request.form.get(f"remove-{img.id}")]
        try:
            workflow.update_result(result, current_user, radiologist=rad, result_date=form.result_date.data,
                                   report=form.report.data or "", report_style=form.report_style.data,
                                   new_images=_new_images(form), captions=captions, remove_images=remove)
        except workflow.ValidationError as exc:
            _field_errors(form, exc, "report")
        except workflow.TransitionError as exc:
            flash(str(exc), "error")
        else:
            flash("Result saved.", "success")
            return redirect(url_for("imaging.view_result", result_id=result.id))
    status = 400 if request.method == "POST" else 200
    return render_template("imaging/result_form.html", form=form, req=result.request, result=result), status


@bp.route("/results/<int:result_id>/finalise", methods=["POST"])
@requires(Action.REPORT)
def finalise_result(result_id: int):
    result = db.get_or_404(Result, result_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        workflow.finalise_result(result, current_user)
    except workflow.WorkflowError as exc:
        flash(str(exc), "error")
    else:
        flash("Result finalised; it is now read-only.", "success")
    return redirect(url_for("imaging.view_result", result_id=result.id))


@bp.route("/results/<int:result_id>/addenda", methods=["POST"])
@requires(Action.REPORT)
def add_addendum(result_id: int):
    result = db.get_or_404(Result, result_id)
    form = AddendumForm()
    if form.validate_on_submit():
        try:
            workflow.add_addendum(result, current_user, form.text.data)
        except workflow.WorkflowError as exc:
            flash(str(exc), "error")
        else:
            flash("Addendum added.", "success")
            return redirect(url_for("imaging.view_result", result_id=result.id))
    return render_template("imaging/result.html", result=result, req=result.request,
                           addendum_form=form, action_form=EmptyForm(), studies=_result_studies(result)), 400


@bp.route("/results/<int:result_id>/print")
@requires(Action.VIEW)
def print_result(result_id: int):
    result = db.get_or_404(Result, result_id)
    from ..settings.service import clinic_settings

    return render_template("imaging/print.html", result=result, req=result.request, clinic=clinic_settings())


@bp.route("/results/images/<name>")
@requires(Action.VIEW)
def result_image(name: str):
    """Images are patient data: served only to signed-in users, never cached
    by shared caches."""
    from ..models import ResultImage

    if name.endswith(".thumb.jpg"):
        base = name[: -len(".thumb.jpg")]
        candidates = [base + ext for _, ext in images.ALLOWED.values()]
    else:
        candidates = [name]
    row = db.session.scalar(select(ResultImage).where(ResultImage.stored_name.in_(candidates)))
    if row is None:
        abort(404)
    resp = send_from_directory(current_app.config["RESULT_IMAGE_DIR"], name, max_age=3600)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp
