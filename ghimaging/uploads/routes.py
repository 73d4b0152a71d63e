"""The upload page: DICOM files and folders (or archives of them) sent to
an Orthanc, with a line per file (see :mod:`.service`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
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
def _one_spool_for_all_parts(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Every file part of an upload goes into one temporary file (see
    ``spool``), so a folder of 20,000 files holds one descriptor, not
    20,000. Set here because URL value preprocessors run before every
    ``before_request`` function, CSRF protection's included, and that one
    reads the form, files and all."""
    if endpoint == "uploads.upload" and request.method == "POST":
        parts = spool.Spool()
        request.upload_spool = parts  # type: ignore[attr-defined]
        request._get_file_stream = parts.part  # type: ignore[method-assign,assignment]  # Werkzeug's per-part stream factory


@bp.teardown_request
def _close_spool(exc: BaseException | None) -> None:
    parts = getattr(request, "upload_spool", None)
    if parts is not None:
        parts.close()


def _page(status: int = 200, **context: Any) -> ResponseReturnValue:
    servers = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    requests = db.session.scalars(select(ImagingRequest).where(ImagingRequest.state.in_(
        (RequestState.REQUESTED.value, RequestState.DONE.value))).order_by(ImagingRequest.id.desc()).limit(200)).all()
    context.setdefault("report", None)
    context.setdefault("preselect", None)
    return render_template("uploads/upload.html", servers=servers, requests=requests, form=EmptyForm(),
                           **context), status


@bp.route("/", methods=["GET"])
@requires(Action.PERFORM)
def page() -> ResponseReturnValue:
    return _page(preselect=request.args.get("request_id", type=int))


@bp.route("/", methods=["POST"])
@requires(Action.PERFORM)
def upload() -> ResponseReturnValue:
    """Files arrive as multipart; Werkzeug spools each to a temporary file,
    so nothing whole is held in memory. JSON for the page's script, HTML
    for a browser without it."""
    wants_json = request.accept_mimetypes.best == "application/json" or request.args.get("format") == "json"
    server = db.session.get(OrthancServer, bounded_int(request.form.get("server_id")) or 0)
    files = [(f.filename or _("(no name)"), f.stream) for f in request.files.getlist("files") if f]
    request_id = bounded_int(request.form.get("request_id")) if request.form.get("request_id") else None
    try:
        report, studies = service.upload(server, files, request_id, current_user)
    except service.UploadRefused as exc:
        status = 413 if exc.code == "too_large" else 400
        if wants_json:
            return jsonify(error=exc.code, message=exc.message), status
        flash(exc.message, "error")
        return _page(status)
    db.session.commit()
    if wants_json:
        from ..ui import dicom_name

        out = report.as_dict()
        out["study_links"] = [{"id": s.id, "url": f"/orthanc/studies/{s.id}",
                               "label": f"{dicom_name(s.patient_name) or s.patient_id} · {s.description or s.study_uid}"}
                              for s in studies]
        return jsonify(out)
    return _page(report=report, studies=studies, preselect=request_id)
