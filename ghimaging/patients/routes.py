from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..auth.decorators import requires
from ..extensions import db
from ..models import ImagingRequest, Patient
from ..permissions import Action
from ..ui import day, paginate
from . import service
from .forms import PatientForm

bp = Blueprint("patients", __name__, url_prefix="/patients")


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


def _save(form: PatientForm, patient: Patient | None) -> Patient | None:
    """Create or update, and commit; None when a field is refused (said at
    the field, nothing saved)."""
    data = {k: getattr(form, k).data for k in ("puid", "family_name", "given_name", "birth_date",
                                                 "sex", "phone", "notes", "alerts")}
    try:
        saved = service.create_patient(data) if patient is None else service.update_patient(patient, data)
    except service.PatientError as exc:
        db.session.rollback()
        for field, message in exc.errors.items():
            getattr(form, field).errors.append(message)
        return None
    db.session.commit()
    return saved


@bp.route("/new", methods=["GET", "POST"])
@requires(Action.EDIT_PATIENTS)
def new() -> ResponseReturnValue:
    form = PatientForm()
    if form.validate_on_submit():
        patient = _save(form, None)
        if patient:
            flash(f"Patient {patient.full_name} registered.", "success")
            return redirect(url_for("patients.view", patient_id=patient.id))
    status = 400 if request.method == "POST" else 200
    return render_template("patients/form.html", form=form, patient=None), status


@bp.route("/<int:patient_id>/edit", methods=["GET", "POST"])
@requires(Action.EDIT_PATIENTS)
def edit(patient_id: int) -> ResponseReturnValue:
    patient = db.get_or_404(Patient, patient_id)
    form = PatientForm(obj=patient)
    if form.validate_on_submit() and _save(form, patient):
        flash("Patient saved.", "success")
        _flash_lost_worklists(patient)
        return redirect(url_for("patients.view", patient_id=patient.id))
    status = 400 if request.method == "POST" else 200
    return render_template("patients/form.html", form=form, patient=patient), status


def _flash_lost_worklists(patient: Patient) -> None:
    """Saving a patient rewrites their waiting worklist items; one that can
    no longer be written (a new name the template's character set cannot
    hold) has left the worklist, and the person who saved must know."""
    from ..imaging.workflow import waiting_without_file

    lost = waiting_without_file(ImagingRequest.patient_id == patient.id)
    if lost:
        flash(f"{len(lost)} waiting request(s) of this patient are no longer in the worklist: "
              f"{lost[0].accession_number}: {lost[0].worklist_problem}", "error")


@bp.route("/<int:patient_id>")
@requires(Action.VIEW)
def view(patient_id: int) -> ResponseReturnValue:
    patient = db.get_or_404(Patient, patient_id)
    reqs = db.session.scalars(select(ImagingRequest).where(ImagingRequest.patient_id == patient.id)
                              .options(selectinload(ImagingRequest.result))  # the state shown needs it
                              .order_by(ImagingRequest.id.desc())).all()
    return render_template("patients/view.html", patient=patient, requests=reqs)
