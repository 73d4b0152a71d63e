from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import ImagingRequest, OrthancServer, WorklistTemplate
from ..permissions import Action
from ..querytools import bounded_int
from . import build_file, dicomfile, sandbox, selftest, templates, writer
from .forms import TemplateForm
from .render import RenderError
from .variables import VARIABLES

bp = Blueprint("worklists", __name__, url_prefix="/admin/worklists")


@bp.route("/")
@requires(Action.CONFIGURE)
def index():
    folder = writer.folder()
    files = sorted(p.name for p in folder.glob("*.wl"))
    from ..models import WorklistFile

    ours = set(db.session.scalars(select(WorklistFile.filename)))
    servers = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    rows = templates.all_templates()
    return render_template("worklists/index.html", folder=folder, files=files, ours=ours,
                           templates=rows, problems=templates.problems(rows), servers=servers,
                           action_form=EmptyForm(), result=None)


@bp.route("/test", methods=["POST"])
@requires(Action.CONFIGURE)
def self_test():
    if not EmptyForm().validate_on_submit():
        abort(400)
    server = db.get_or_404(OrthancServer, bounded_int(request.form.get("server_id")) or 0)
    result = selftest.self_test(server, current_app.config["WORKLIST_DIR"])
    folder = writer.folder()
    from ..models import WorklistFile

    ours = set(db.session.scalars(select(WorklistFile.filename)))
    servers = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    rows = [dicomfile_rows(item) for item in result.items[:50]]
    stored = templates.all_templates()
    return render_template("worklists/index.html", folder=folder, files=sorted(p.name for p in folder.glob("*.wl")),
                           ours=ours, templates=stored, problems=templates.problems(stored), servers=servers,
                           action_form=EmptyForm(), result=result, result_rows=rows, tested=server)


def dicomfile_rows(item) -> dict[str, str]:
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
def rebuild():
    if not EmptyForm().validate_on_submit():
        abort(400)
    report = writer.rebuild()
    flash(f"Worklist folder rebuilt: {len(report.written)} written, {report.unchanged} unchanged, "
          f"{len(report.removed)} removed, {len(report.foreign)} other file(s) left alone"
          + (f"; {len(report.errors)} error(s): " + "; ".join(report.errors[:3]) if report.errors else "."),
          "error" if report.errors else "success")
    return redirect(url_for("worklists.index"))


def _preview_requests() -> list[ImagingRequest]:
    return list(db.session.scalars(select(ImagingRequest).order_by(ImagingRequest.id.desc()).limit(30)))


@bp.route("/templates/new", methods=["GET", "POST"], defaults={"template_id": None})
@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def edit_template(template_id: int | None):
    tpl = db.get_or_404(WorklistTemplate, template_id) if template_id else None
    form = TemplateForm(obj=tpl)
    reqs = _preview_requests()
    form.preview_request.choices = [(0, "— choose a request —")] + [
        (r.id, f"{r.accession_number} · {r.patient.full_name} · {r.test.name}") for r in reqs]
    if request.method == "GET" and tpl is None:
        form.body.data = templates.for_test_default_body()
        form.charset.data, form.encoding.data = "ISO_IR 192", "utf-8"
    preview = error = None
    rows = []
    status = 200
    if form.validate_on_submit():
        if request.form.get("action") == "preview":
            rid = bounded_int(form.preview_request.data)
            req = db.session.get(ImagingRequest, rid) if rid else (reqs[0] if reqs else None)
            if req is None:
                error = "There is no request to preview with yet."
            else:
                draft = WorklistTemplate(name=form.name.data, body=form.body.data, charset=form.charset.data,
                                         encoding=form.encoding.data, utf8_fallback=form.utf8_fallback.data)
                try:
                    data = build_file(req, draft)
                    preview, rows = data.text, dicomfile.describe(data.data)
                except RenderError as exc:
                    error, status = f"Template error: {exc}", 400
                except dicomfile.DumpError as exc:
                    error, status = f"The rendered text is not valid dump2dcm syntax: {exc}", 400
                except ValueError as exc:
                    error, status = str(exc), 400
        else:
            try:
                saved = templates.save(tpl, name=form.name.data, body=form.body.data, charset=form.charset.data,
                                       encoding=form.encoding.data, comment=form.comment.data or "",
                                       is_default=form.is_default.data, utf8_fallback=form.utf8_fallback.data)
            except templates.TemplateError as exc:
                getattr(form, exc.field).errors.append(str(exc))
                status = 400
            else:
                flash(f"Template {saved.name} saved. Run 'Rebuild folder' to rewrite waiting items.", "success")
                return redirect(url_for("worklists.edit_template", template_id=saved.id))
    elif request.method == "POST":
        status = 400
    return render_template("worklists/template_form.html", form=form, template=tpl, preview=preview,
                           rows=rows, error=error, variables=VARIABLES, functions=sorted(sandbox.FUNCTIONS),
                           methods=sorted(sandbox.METHODS)), status
