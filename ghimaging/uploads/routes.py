from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import select

from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import ImagingRequest, OrthancServer, RequestState
from ..permissions import Action
from ..querytools import bounded_int
from . import service, spool

bp = Blueprint("uploads", __name__, url_prefix="/upload")


@bp.url_value_preprocessor
def _one_spool_for_all_parts(endpoint, values):
    """Every file part of an upload goes into one temporary file (see
    ``spool``), so a folder of 20,000 files holds one descriptor, not
    20,000. Set here because URL value preprocessors run before every
    ``before_request`` function, CSRF protection's included, and that one
    reads the form, files and all."""
    if endpoint == "uploads.upload" and request.method == "POST":
        request.upload_spool = spool.Spool()
        request._get_file_stream = request.upload_spool.part  # Werkzeug's per-part stream factory


@bp.teardown_request
def _close_spool(exc):
    parts = getattr(request, "upload_spool", None)
    if parts is not None:
        parts.close()


def _servers():
    return db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()


def _open_requests():
    return db.session.scalars(select(ImagingRequest).where(ImagingRequest.state.in_(
        (RequestState.REQUESTED.value, RequestState.DONE.value))).order_by(ImagingRequest.id.desc()).limit(200)).all()


@bp.route("/", methods=["GET"])
@requires(Action.PERFORM)
def page():
    return render_template("uploads/upload.html", servers=_servers(), requests=_open_requests(), form=EmptyForm(),
                           report=None, preselect=request.args.get("request_id", type=int))


@bp.route("/", methods=["POST"])
@requires(Action.PERFORM)
def upload():
    """Files arrive as multipart; Werkzeug spools each to a temporary file,
    so nothing whole is held in memory. JSON for the page's script, HTML
    for a browser without it."""
    wants_json = request.accept_mimetypes.best == "application/json" or request.args.get("format") == "json"
    form = EmptyForm()
    if not form.validate_on_submit():
        return _answer(wants_json, 400, "The form expired; reload the page and try again.")
    server = db.session.get(OrthancServer, bounded_int(request.form.get("server_id")) or 0)
    if server is None:
        return _answer(wants_json, 400, "Choose the Orthanc server to send the files to.")
    files = [(f.filename or "(no name)", f.stream) for f in request.files.getlist("files") if f]
    if not files:
        return _answer(wants_json, 400, "Choose files or a folder to upload.")
    too_many = service.too_many_files(len(files))
    if too_many:
        return _answer(wants_json, 413, too_many, error="too_large")
    request_id = bounded_int(request.form.get("request_id")) if request.form.get("request_id") else None
    report = service.process(server, files)
    studies = service.sync_and_link(server, report, request_id, current_user)
    current_app.logger.info("upload by %s to %s: %s", current_user.username, server.label, report.as_dict()["counts"])
    if wants_json:
        out = report.as_dict()
        from ..ui import dicom_name

        out["study_links"] = [{"id": s.id, "url": f"/orthanc/studies/{s.id}",
                               "label": f"{dicom_name(s.patient_name) or s.patient_id} · {s.description or s.study_uid}"}
                              for s in studies]
        return jsonify(out)
    return render_template("uploads/upload.html", servers=_servers(), requests=_open_requests(), form=EmptyForm(),
                           report=report, studies=studies, preselect=request_id)


def _answer(wants_json: bool, status: int, message: str, error: str = "bad_request"):
    if wants_json:
        return jsonify(error=error, message=message), status
    flash(message, "error")
    return render_template("uploads/upload.html", servers=_servers(), requests=_open_requests(), form=EmptyForm(),
                           report=None, preselect=None), status
