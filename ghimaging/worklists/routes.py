"""The Worklists pages: the folder, the self-test against an Orthanc, the
folder rebuild and the template editor. Each view calls one service and
commits once when it changed something. The services that need pydicom and
Genshi are imported by the views that use them, not with the application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import select

from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import OrthancServer, WorklistFile, WorklistTemplate
from ..permissions import Action
from ..querytools import bounded_int
from . import writer
from .forms import TemplateForm
from .variables import VARIABLES

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

bp = Blueprint("worklists", __name__, url_prefix="/admin/worklists")


def _index_page(**extra: Any) -> str:
    from . import templates

    folder = writer.folder()
    ours = set(db.session.scalars(select(WorklistFile.filename)))
    servers = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    rows = templates.all_templates()
    return render_template("worklists/index.html", folder=folder, files=sorted(p.name for p in folder.glob("*.wl")),
                           ours=ours, templates=rows, problems=templates.problems(rows), servers=servers,
                           action_form=EmptyForm(), **{"result": None, **extra})


@bp.route("/")
@requires(Action.CONFIGURE)
def index() -> ResponseReturnValue:
    return _index_page()


@bp.route("/test", methods=["POST"])
@requires(Action.CONFIGURE)
def self_test() -> ResponseReturnValue:
    from . import selftest

    server = db.get_or_404(OrthancServer, bounded_int(request.form.get("server_id")) or 0)
    result = selftest.self_test(server, current_app.config["WORKLIST_DIR"])
    db.session.commit()  # the server's encoding, read again by the test
    return _index_page(result=result, result_rows=[dicomfile_rows(item) for item in result.items[:50]],
                       tested=server)


def dicomfile_rows(item: Dataset) -> dict[str, str]:
    sps = item.get("ScheduledProcedureStepSequence")
    step = sps[0] if sps else {}
    return {
        "PatientName": str(item.get("PatientName", "")), "PatientID": str(item.get("PatientID", "")),
        "AccessionNumber": str(item.get("AccessionNumber", "")),
        "Modality": str(step.get("Modality", "")) if step else "",
        "Station": str(step.get("ScheduledStationAETitle", "")) if step else "",
        "Date": str(step.get("ScheduledProcedureStepStartDate", "")) if step else "",
        "Procedure": str(item.get("RequestedProcedureDescription", "")),
    }


@bp.route("/rebuild", methods=["POST"])
@requires(Action.CONFIGURE)
def rebuild() -> ResponseReturnValue:
    report = writer.rebuild()
    db.session.commit()
    counts = {"written": len(report.written), "unchanged": report.unchanged, "removed": len(report.removed),
              "foreign": len(report.foreign)}
    if report.errors:
        flash(_("Worklist folder rebuilt: %(written)s written, %(unchanged)s unchanged, %(removed)s removed, "
                "%(foreign)s other file(s) left alone; %(count)s error(s): %(errors)s",
                count=len(report.errors), errors="; ".join(report.errors[:3]), **counts), "error")
    else:
        flash(_("Worklist folder rebuilt: %(written)s written, %(unchanged)s unchanged, %(removed)s removed, "
                "%(foreign)s other file(s) left alone.", **counts), "success")
    return redirect(url_for("worklists.index"))


@bp.route("/templates/new", methods=["GET", "POST"], defaults={"template_id": None})
@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def edit_template(template_id: int | None) -> ResponseReturnValue:
    """Preview the typed template against a request, or save it. A body
    using names no request provides is refused at save, all of them listed
    (the preview lists them too): see :class:`.names.UnknownVariables`."""
    from . import editor, sandbox, templates

    tpl = db.get_or_404(WorklistTemplate, template_id) if template_id else None
    form = TemplateForm(obj=tpl)
    reqs = editor.preview_requests()
    form.preview_request.choices = editor.request_choices(reqs)
    if request.method == "GET" and tpl is None:
        form.body.data = templates.for_test_default_body()
        form.charset.data, form.encoding.data = "ISO_IR 192", "utf-8"
    shown = editor.DraftPreview()
    status = 200
    if form.validate_on_submit():
        if request.form.get("action") == "preview":
            draft = editor.draft(name=form.name.data, body=form.body.data, charset=form.charset.data,
                                 encoding=form.encoding.data, utf8_fallback=form.utf8_fallback.data)
            shown = editor.preview(draft, bounded_int(form.preview_request.data), reqs)
            status = 400 if shown.refused else 200
        else:
            try:
                saved = templates.save(tpl, name=form.name.data, body=form.body.data, charset=form.charset.data,
                                       encoding=form.encoding.data, comment=form.comment.data or "",
                                       is_default=form.is_default.data, utf8_fallback=form.utf8_fallback.data)
            except templates.TemplateUnknownVariables as exc:
                said = editor.unknown_message(exc.names, exc.line)
                form.body.errors.append(said)
                shown = editor.DraftPreview(error=said, refused=True, unknown=exc.names)
                status = 400
            except templates.TemplateError as exc:
                getattr(form, exc.field).errors.append(exc.message)
                status = 400
            else:
                db.session.commit()
                flash(_("Template %(name)s saved. Run 'Rebuild folder' to rewrite waiting items.", name=saved.name),
                      "success")
                return redirect(url_for("worklists.edit_template", template_id=saved.id))
    elif request.method == "POST":
        status = 400
    return render_template("worklists/template_form.html", form=form, template=tpl, preview=shown.text,
                           rows=shown.rows, error=shown.error, unknown=shown.unknown, variables=VARIABLES,
                           functions=sorted(sandbox.FUNCTIONS), methods=sorted(sandbox.METHODS)), status
