from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..auth.decorators import requires
from ..extensions import db
from ..models import ImagingRequest, Patient
from ..permissions import Action
from ..settings import service as settings
from ..ui import day, paginate
from . import service
from .forms import PatientForm

bp = Blueprint("patients", __name__, url_prefix="/patients")

_FIELDS = ("puid", "family_name", "given_name", "birth_date", "sex", "phone", "notes", "alerts")


@bp.route("/")
@requires(Action.VIEW)
def index() -> ResponseReturnValue:
    q = request.args.get("q", "")
    page = paginate(service.search_query(q))
    return render_template("patients/index.html", page=page, q=q)


@bp.route("/lookup")
@requires(Action.VIEW)
def lookup() -> ResponseReturnValue:
    """Suggestions for the patient picker on the order form."""
    q = request.args.get("q", "").strip()
    if len(q) < 1:
        return jsonify([])
    rows = db.session.scalars(service.search_query(q).limit(15)).all()
    return jsonify([{"id": p.id, "puid": p.puid, "name": p.full_name,
                     "birth_date": p.birth_date.isoformat() if p.birth_date else "",
                     "born": day(p.birth_date),  # in the clinic's date format, for people
                     "sex": p.sex, "alerts": p.alert_lines} for p in rows])


def _then_order() -> bool:
    """Opened from the order form (``?then=order``): the patient saved or
    chosen goes back to a new order for them."""
    return request.args.get("then") == "order"


def _after(patient: Patient) -> str:
    if _then_order():
        return url_for("imaging.new_order", patient_id=patient.id)
    return url_for("patients.view", patient_id=patient.id)


def _refused(form: PatientForm, exc: service.PatientError) -> None:
    """A field the service refused: said at the field, nothing saved."""
    db.session.rollback()
    for field, message in exc.errors.items():
        getattr(form, field).errors.append(message)


@bp.route("/new", methods=["GET", "POST"])
@requires(Action.EDIT_PATIENTS)
def new() -> ResponseReturnValue:
    """Register a patient. A look-alike already registered (same birth
    date, similar name) is shown before saving, with "Use existing"; the
    new patient is saved only once "This is a different person" is ticked."""
    form = PatientForm()
    allocated = settings.puid_pattern() is not None
    candidates: list[Patient] = []
    status = 400 if request.method == "POST" else 200
    confirmed = False
    if form.validate_on_submit():
        data = {k: getattr(form, k).data for k in _FIELDS}
        if allocated:
            data["puid"] = ""  # given on save; the field is not offered
        confirmed = _confirmed(form)
        try:
            patient = service.create_patient(data, confirm_new=confirmed)
        except service.PatientError as exc:
            _refused(form, exc)
        except service.ProbableDuplicate as exc:
            db.session.rollback()
            candidates, status = exc.candidates, 409
            # A new warning, for what is typed now: asked afresh.
            form.confirm_new.data, form.confirmed_for.data = False, exc.fingerprint
        else:
            db.session.commit()
            flash(_("Patient %(name)s registered with PUID %(puid)s.", name=patient.full_name, puid=patient.puid),
                  "success")
            return redirect(_after(patient))
    return render_template("patients/form.html", form=form, patient=None, allocated=allocated,
                           candidates=candidates, then_order=_then_order(), puid_locked="",
                           ask_reason=False, confirmed=confirmed), status


def _confirmed(form: PatientForm) -> bool:
    """"This is a different person" ticked for the name and birth date
    being saved: a tick given for other ones (corrected since, and perhaps
    like another registered patient now) does not count."""
    if not form.confirm_new.data:
        return False
    import hmac

    now = service.identity_fingerprint(form.family_name.data or "", form.given_name.data or "",
                                       form.birth_date.data)
    if hmac.compare_digest(now, str(form.confirmed_for.data or "")):
        return True
    form.confirm_new.data = False
    return False


@bp.route("/<int:patient_id>/edit", methods=["GET", "POST"])
@requires(Action.EDIT_PATIENTS)
def edit(patient_id: int) -> ResponseReturnValue:
    """Edit a patient. A PUID that images already carry is read-only but to
    an administrator, who must say why it changes."""
    patient = db.get_or_404(Patient, patient_id)
    form = PatientForm(obj=patient)
    locked = service.has_studies(patient)
    may_change = service.may_change_linked_puid(current_user)
    if form.validate_on_submit():
        data = {k: getattr(form, k).data for k in _FIELDS}
        if locked and not may_change:
            data["puid"] = patient.puid  # shown read-only; the service refuses a change anyway
        try:
            service.update_patient(patient, data, user=current_user, reason=form.puid_reason.data or "")
        except service.PatientError as exc:
            _refused(form, exc)
            patient = db.get_or_404(Patient, patient_id)
        else:
            db.session.commit()
            flash(_("Patient saved."), "success")
            _flash_lost_worklists(patient)
            return redirect(url_for("patients.view", patient_id=patient.id))
    status = 400 if request.method == "POST" else 200
    puid_locked = ""
    if locked and not may_change:
        puid_locked = _("Images already carry this PUID: only an administrator can change it, with a reason.")
    # A new PUID that images carry asks an administrator for a reason too.
    ask_reason = may_change and (locked or bool(form.puid_reason.errors or form.puid_reason.data))
    return render_template("patients/form.html", form=form, patient=patient, allocated=False, candidates=[],
                           then_order=False, puid_locked=puid_locked, ask_reason=ask_reason, confirmed=False), status


def _flash_lost_worklists(patient: Patient) -> None:
    """Saving a patient rewrites their waiting worklist items; one that can
    no longer be written (a new name the template's character set cannot
    hold) has left the worklist, and the person who saved must know."""
    from ..imaging.workflow import waiting_without_file

    lost = waiting_without_file(ImagingRequest.patient_id == patient.id)
    if lost:
        flash(ngettext("%(num)d waiting request of this patient is no longer in the worklist: "
                       "%(accession)s: %(problem)s",
                       "%(num)d waiting requests of this patient are no longer in the worklist: "
                       "%(accession)s: %(problem)s", len(lost),
                       accession=lost[0].accession_number, problem=lost[0].worklist_problem), "error")


@bp.route("/<int:patient_id>")
@requires(Action.VIEW)
def view(patient_id: int) -> ResponseReturnValue:
    patient = db.get_or_404(Patient, patient_id)
    reqs = db.session.scalars(select(ImagingRequest).where(ImagingRequest.patient_id == patient.id)
                              .options(selectinload(ImagingRequest.result))  # the state shown needs it
                              .order_by(ImagingRequest.id.desc())).all()
    return render_template("patients/view.html", patient=patient, requests=reqs,
                           puid_changes=service.puid_history(patient))
