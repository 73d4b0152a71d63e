"""The Inbox: studies that found no request, and linking by hand.

Views only: every rule lives in :mod:`.matching`.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_login import current_user

from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import ImagingRequest, OrthancStudy, StudyLink
from ..permissions import Action
from ..querytools import bounded_int
from ..ui import local_path, paginate
from . import matching, queries
from .routes import bp


@bp.route("/unmatched")
@requires(Action.VIEW)
def unmatched() -> ResponseReturnValue:
    page = paginate(matching.unmatched())
    suggestions, reasons = matching.inbox_notes(page.items)
    review = db.session.scalars(matching.to_review().limit(50)).all()
    return render_template("orthanc/unmatched.html", page=page, suggestions=suggestions, reasons=reasons,
                           review=review, action_form=EmptyForm())


def _back(default: str) -> str:
    target = request.form.get("back", "")
    return local_path(target, default)


@bp.route("/studies/<int:study_id>/link", methods=["POST"])
@requires(Action.LINK_STUDIES)
def link_study(study_id: int) -> ResponseReturnValue:
    study = db.get_or_404(OrthancStudy, study_id)
    req = _request_from_form()
    if req is None:
        flash(_("No request with this id or accession number."), "error")
        return redirect(_back(url_for("orthanc.view_study", study_id=study.id)))
    confirm = request.form.get("confirm_other_patient") == "yes"
    try:
        made = matching.link(study, req, current_user, confirm_other_patient=confirm,
                             reason=request.form.get("reason", ""))
    except matching.OtherPatientError:
        if confirm:  # ticked, but no reason
            flash(_("Give the reason for linking a study of another patient."), "error")
        return redirect(url_for("orthanc.link_other", study_id=study.id, request_id=req.id,
                                back=_back(url_for("orthanc.view_study", study_id=study.id))))
    except matching.LinkError as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
        notes = matching.warnings_of(study) if (made.warning or made.other_patient) else []
        flash(" ".join([_("Study linked to request %(accession)s.", accession=req.accession_number), *notes]),
              "error" if notes else "success")
    return redirect(_back(url_for("orthanc.view_study", study_id=study.id)))


@bp.route("/studies/<int:study_id>/link-other")
@requires(Action.LINK_STUDIES)
def link_other(study_id: int) -> ResponseReturnValue:
    """Both identities side by side before a study is linked to a request
    of another patient; the link needs a tick and a reason."""
    study = db.get_or_404(OrthancStudy, study_id)
    req = db.get_or_404(ImagingRequest, bounded_int(request.args.get("request_id")) or 0)
    back = request.args.get("back", "")
    back = local_path(back, url_for("orthanc.unmatched"))
    return render_template("orthanc/link_other.html", study=study, req=req, back=back, action_form=EmptyForm(),
                           same=matching.same_patient(study, req.patient),
                           near=matching.near_id_reason(study.patient_id, req.patient.puid),
                           differences=matching.identity_differences(study, req.patient))


@bp.route("/links/<int:link_id>/confirm", methods=["POST"])
@requires(Action.LINK_STUDIES)
def confirm_link(link_id: int) -> ResponseReturnValue:
    """A person checked a link whose names or birth dates differed."""
    row = db.get_or_404(StudyLink, link_id)
    try:
        matching.confirm(row, current_user)
    except matching.LinkError as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(_("Identity checked for request %(accession)s.", accession=row.request.accession_number), "success")
    return redirect(_back(url_for("orthanc.unmatched")))


def _request_from_form() -> ImagingRequest | None:
    return queries.request_by_number(bounded_int(request.form.get("request_id")), request.form.get("accession") or "")


@bp.route("/studies/<int:study_id>/unlink", methods=["POST"])
@requires(Action.LINK_STUDIES)
def unlink_study(study_id: int) -> ResponseReturnValue:
    study = db.get_or_404(OrthancStudy, study_id)
    req = _request_from_form()
    if req is None:
        abort(404)
    try:
        matching.unlink(study, req, current_user)
    except matching.LinkError as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(_("Study unlinked from request %(accession)s; it will not be linked again automatically.",
                accession=req.accession_number),
              "success")
    return redirect(_back(url_for("orthanc.view_study", study_id=study.id)))
