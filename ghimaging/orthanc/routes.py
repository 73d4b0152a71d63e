"""Orthanc pages: servers (add, edit, check, sync, remove), the mirrored
studies and patients, deleting in Orthanc. Views parse the request, call
one service, commit, and render or redirect."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_login import current_user
from sqlalchemy import select

from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import OrthancPatient, OrthancServer, OrthancStudy
from ..patients import service as patients
from ..permissions import Action
from ..querytools import bounded_int
from ..ui import paginate
from . import background, instances, links, matching, queries, servers, streaming, sync
from .client import NotFound, deadline
from .forms import LinkForm, ServerForm
from .summary import Summary

bp = Blueprint("orthanc", __name__, url_prefix="/orthanc")
bp.app_template_global("link_warning")(matching.link_warning)

# An admin waits for a delete; Orthanc may need a while for a large study, and
# a delete cut short may still complete in Orthanc (the next reconciliation
# then removes the mirror rows), so this is generous but finite.
DELETE_DEADLINE = 60.0


# -- servers ------------------------------------------------------------------

@bp.route("/servers")
@requires(Action.CONFIGURE)
def server_list() -> ResponseReturnValue:
    rows = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    counts = {s.id: servers.study_count(s) for s in rows}
    return render_template("orthanc/servers.html", servers=rows, counts=counts)


@bp.route("/servers/new", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def new_server() -> ResponseReturnValue:
    form = ServerForm()
    if form.validate_on_submit():
        try:
            # The check (four calls) within a page's deadline: an address
            # that accepts and never answers is refused in seconds.
            with deadline(instances.setting("ORTHANC_PAGE_DEADLINE")):
                server = servers.add_server(label=form.label.data, url=form.url.data,
                                            username=form.username.data or "", password=form.password.data or "",
                                            browser_url=form.browser_url.data or "")
        except servers.ServerError as exc:
            getattr(form, exc.field or "url").errors.append(str(exc))
        else:
            db.session.commit()
            flash(_("Orthanc %(label)s added (Orthanc %(version)s). The first sync starts shortly.", label=server.label,
                    version=server.version), "success")
            return redirect(url_for("orthanc.view_server", server_id=server.id))
    status = 400 if request.method == "POST" else 200
    return render_template("orthanc/server_form.html", form=form, server=None), status


@bp.route("/servers/<int:server_id>", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def view_server(server_id: int) -> ResponseReturnValue:
    server = db.get_or_404(OrthancServer, server_id)
    form = ServerForm(obj=server) if request.method == "GET" else ServerForm()
    if request.method == "GET":
        form.password.data = ""
    if form.validate_on_submit():
        try:
            changed = servers.update_server(server, label=form.label.data, url=form.url.data,
                                            username=form.username.data or "", browser_url=form.browser_url.data or "",
                                            password=form.password.data or None)
        except servers.ServerError as exc:
            getattr(form, exc.field or "url").errors.append(str(exc))
        else:
            db.session.commit()
            if changed:
                background.recheck_in_background(server.id)
                flash(_("Saved; checking the new connection details in the background."), "info")
            else:
                flash(_("Saved."), "success")
            return redirect(url_for("orthanc.view_server", server_id=server.id))
    status = 400 if request.method == "POST" else 200
    return render_template("orthanc/server.html", server=server, form=form, action_form=EmptyForm(),
                           count=servers.study_count(server)), status


def _sync_message(summary: Summary) -> str:
    """The sync's outcome for the person who asked (``summary.line()`` is
    the same in English for the log and the command line)."""
    mode = {"full": _("full"), "incremental": _("incremental"), "auto": _("auto")}.get(summary.mode, summary.mode)
    if summary.skipped:
        return str(_("%(server)s: skipped (%(why)s)", server=summary.server, why=summary.skipped))
    if summary.error:
        return str(_("%(server)s: %(mode)s sync failed: %(error)s", server=summary.server, mode=mode,
                     error=summary.error))
    text = _("%(server)s: %(mode)s sync: %(updated)s studies updated, %(deleted)s removed, %(changes)s changes, "
             "%(requests)s requests, index %(index)s, %(seconds)ss", server=summary.server, mode=mode,
             updated=summary.studies_updated, deleted=summary.studies_deleted, changes=summary.changes,
             requests=summary.requests, index=summary.last_change, seconds=f"{summary.seconds:.2f}")
    return str(text + (" " + _("(Orthanc database reset detected)") if summary.reset_detected else ""))


@bp.route("/servers/<int:server_id>/sync", methods=["POST"])
@requires(Action.PERFORM)
def sync_now(server_id: int) -> ResponseReturnValue:
    server = db.get_or_404(OrthancServer, server_id)
    summary = sync.run(server.id, mode="full" if request.form.get("full") else "auto",
                       client_factory=servers.client_for_person)
    db.session.commit()
    flash(_sync_message(summary), "error" if summary.error else ("info" if summary.skipped else "success"))
    if current_user.can(Action.CONFIGURE):
        return redirect(url_for("orthanc.view_server", server_id=server.id))
    return redirect(url_for("orthanc.study_list", server=server.id))


@bp.route("/servers/<int:server_id>/delete", methods=["POST"])
@requires(Action.CONFIGURE)
def delete_server(server_id: int) -> ResponseReturnValue:
    server = db.get_or_404(OrthancServer, server_id)
    label = server.label
    servers.delete_server(server)
    db.session.commit()
    flash(_("Orthanc %(label)s removed from ghimaging (nothing was deleted in Orthanc).", label=label), "success")
    return redirect(url_for("orthanc.server_list"))


# -- studies and patients ---------------------------------------------------------

def _date_arg(name: str) -> date | None:
    raw = request.args.get(name, "")
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        flash(_("Ignored the start date: use YYYY-MM-DD.") if name == "date_from"
              else _("Ignored the end date: use YYYY-MM-DD."), "error")
        return None


@bp.route("/studies")
@requires(Action.VIEW)
def study_list() -> ResponseReturnValue:
    q, server_id = request.args.get("q", ""), bounded_int(request.args.get("server"))
    modality, date_from, date_to = request.args.get("modality", "")[:16], _date_arg("date_from"), _date_arg("date_to")
    page = paginate(queries.study_list(q=q, server_id=server_id, modality=modality, date_from=date_from,
                                       date_to=date_to))
    f = {"q": q, "server_id": server_id, "modality": modality, "date_from": date_from, "date_to": date_to}
    all_servers = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    return render_template("orthanc/studies.html", page=page, f=f, servers=all_servers, action_form=EmptyForm())


@bp.route("/studies/<int:study_id>")
@requires(Action.VIEW)
def view_study(study_id: int) -> ResponseReturnValue:
    study = db.get_or_404(OrthancStudy, study_id)
    return render_template("orthanc/study.html", study=study, orthanc_notice=instances.notice(study.server),
                           viewers=servers.viewer_links(study.server, study), action_form=EmptyForm(),
                           links=matching.requests_of(study), warnings=matching.warnings_of(study),
                           reasons=matching.assess(study).reasons, suggestions=matching.suggestions(study),
                           history=matching.history(study))


@bp.route("/studies/<int:study_id>/archive")
@requires(Action.VIEW)
def study_archive(study_id: int) -> ResponseReturnValue:
    """The study as a ZIP (see ``streaming.study_zip``); when Orthanc does
    not start answering in time, back to the study page with a message."""
    study = db.get_or_404(OrthancStudy, study_id)
    try:
        return streaming.study_zip(study)
    except NotFound:
        abort(404)
    except streaming.DownloadFailed as exc:
        flash(_("The study could not be downloaded: %(error)s Try again later.", error=exc), "error")
        return redirect(url_for("orthanc.view_study", study_id=study.id))


@bp.route("/studies/<int:study_id>/delete", methods=["POST"])
@requires(Action.DELETE_IMAGES)
def delete_study(study_id: int) -> ResponseReturnValue:
    study = db.get_or_404(OrthancStudy, study_id)
    if request.form.get("confirm") != study.study_uid:
        flash(_("Deleting needs the confirmation that names the study."), "error")
        return redirect(url_for("orthanc.view_study", study_id=study.id))
    from . import deletion

    try:
        with deadline(DELETE_DEADLINE):
            message = deletion.delete_study(study, current_user)
    except deletion.DeleteError as exc:
        flash(str(exc), "error")
        return redirect(url_for("orthanc.view_study", study_id=study.id))
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("orthanc.study_list"))


@bp.route("/series/<int:series_id>/delete", methods=["POST"])
@requires(Action.DELETE_IMAGES)
def delete_series(series_id: int) -> ResponseReturnValue:
    from ..models import OrthancSeries
    from . import deletion

    series = db.get_or_404(OrthancSeries, series_id)
    study_id = series.study_id
    if request.form.get("confirm") != series.series_uid:
        flash(_("Deleting needs the confirmation that names the series."), "error")
        return redirect(url_for("orthanc.view_study", study_id=study_id))
    try:
        with deadline(DELETE_DEADLINE):
            message = deletion.delete_series(series, current_user)
    except deletion.DeleteError as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(message, "success")
    return redirect(url_for("orthanc.view_study", study_id=study_id))


@bp.route("/patients")
@requires(Action.VIEW)
def patient_list() -> ResponseReturnValue:
    q = request.args.get("q", "")
    page = paginate(queries.patient_list(q=q, server_id=bounded_int(request.args.get("server"))))
    return render_template("orthanc/patients.html", page=page, q=q)


@bp.route("/patients/<int:row_id>", methods=["GET", "POST"])
@requires(Action.VIEW)
def view_patient(row_id: int) -> ResponseReturnValue:
    row = db.get_or_404(OrthancPatient, row_id)
    form = LinkForm()
    if request.method == "POST":
        if not current_user.can(Action.EDIT_PATIENTS):
            abort(403)
        if form.validate_on_submit():
            local = patients.by_puid(form.puid.data)
            if local is None:
                form.puid.errors.append(_("No local patient with this PUID."))
            else:
                links.link_patient(row, local, current_user)
                db.session.commit()
                flash(_("Linked to %(name)s.", name=local.full_name), "success")
                return redirect(url_for("orthanc.view_patient", row_id=row.id))
    studies = db.session.scalars(select(OrthancStudy).where(OrthancStudy.patient_row_id == row.id)
                                 .order_by(OrthancStudy.study_date.desc())).all()
    status = 400 if request.method == "POST" else 200
    return render_template("orthanc/patient.html", row=row, form=form, studies=studies,
                           action_form=EmptyForm()), status


@bp.route("/patients/<int:row_id>/unlink", methods=["POST"])
@requires(Action.EDIT_PATIENTS)
def unlink_patient(row_id: int) -> ResponseReturnValue:
    row = db.get_or_404(OrthancPatient, row_id)
    links.unlink_patient(row, current_user)
    db.session.commit()
    flash(_("Unlinked; this Orthanc patient will not be linked automatically again."), "success")
    return redirect(url_for("orthanc.view_patient", row_id=row.id))
