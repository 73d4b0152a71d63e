"""The Inbox: studies that found no request, and linking by hand.

Views only: every rule lives in :mod:`.matching`.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from ..auth.decorators import roles_required
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import OrthancStudy, Role
from ..querytools import bounded_int
from ..ui import paginate
from . import matching
from .routes import bp


@bp.route("/unmatched")
@login_required
def unmatched():
    page = paginate(matching.unmatched())
    suggestions = {s.id: matching.suggestions(s, limit=3) for s in page.items}
    return render_template("orthanc/unmatched.html", page=page, suggestions=suggestions, action_form=EmptyForm())


def _back(default: str) -> str:
    target = request.form.get("back", "")
    return target if target.startswith("/") and not target.startswith("//") else default


@bp.route("/studies/<int:study_id>/link", methods=["POST"])
@roles_required(Role.PHYSICIAN, Role.TECHNOLOGIST, Role.RADIOLOGIST)
def link_study(study_id: int):
    study = db.get_or_404(OrthancStudy, study_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    req = _request_from_form()
    if req is None:
        flash("No request with this id or accession number.", "error")
    else:
        try:
            matching.link(study, req, current_user)
        except matching.LinkError as exc:
            flash(str(exc), "error")
        else:
            warning = matching.patient_conflict(study)
            flash(f"Study linked to request {req.accession_number}." + (f" {warning}" if warning else ""),
                  "error" if warning else "success")
    return redirect(_back(url_for("orthanc.view_study", study_id=study.id)))


def _request_from_form():
    from ..models import ImagingRequest

    rid = bounded_int(request.form.get("request_id"))
    if rid:
        return db.session.get(ImagingRequest, rid)
    acc = (request.form.get("accession") or "").strip().upper()
    if acc:
        return db.session.scalar(select(ImagingRequest).where(ImagingRequest.accession_number == acc))
    return None


@bp.route("/studies/<int:study_id>/unlink", methods=["POST"])
@roles_required(Role.PHYSICIAN, Role.TECHNOLOGIST, Role.RADIOLOGIST)
def unlink_study(study_id: int):
    study = db.get_or_404(OrthancStudy, study_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    req = _request_from_form()
    if req is None:
        abort(404)
    try:
        matching.unlink(study, req, current_user)
    except matching.LinkError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Study unlinked from request {req.accession_number}; it will not be linked again automatically.",
              "success")
    return redirect(_back(url_for("orthanc.view_study", study_id=study.id)))
