from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import ngettext
from sqlalchemy import select

from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import ImagingTest, ModalityType, ReportTemplate
from ..permissions import Action
from . import report_templates, service
from .forms import ModalityForm, ReportTemplateForm, TestForm

bp = Blueprint("catalog", __name__, url_prefix="/catalog")


@bp.route("/")
@requires(Action.MANAGE_CATALOG)
def index() -> ResponseReturnValue:
    tests = db.session.scalars(select(ImagingTest).join(ImagingTest.modality)
                               .order_by(ModalityType.code, ImagingTest.name)).all()
    return render_template("catalog/index.html", tests=tests, modalities=service.all_modalities(),
                           template_counts=report_templates.counts())


@bp.route("/modalities/new", methods=["GET", "POST"], defaults={"modality_id": None})
@bp.route("/modalities/<int:modality_id>", methods=["GET", "POST"])
@requires(Action.MANAGE_CATALOG)
def modality(modality_id: int | None) -> ResponseReturnValue:
    mt = db.get_or_404(ModalityType, modality_id) if modality_id else None
    form = ModalityForm(obj=mt)
    if form.validate_on_submit():
        try:
            service.save_modality(mt, form.code.data or "", form.name.data or "")
        except service.CatalogError as exc:
            db.session.rollback()
            getattr(form, exc.field or "code").errors.append(str(exc))
        else:
            db.session.commit()
            flash(_("Modality type saved."), "success")
            return redirect(url_for("catalog.index"))
    status = 400 if request.method == "POST" else 200
    return render_template("catalog/modality_form.html", form=form, modality=mt), status


@bp.route("/tests/new", methods=["GET", "POST"], defaults={"test_id": None})
@bp.route("/tests/<int:test_id>", methods=["GET", "POST"])
@requires(Action.MANAGE_CATALOG)
def test(test_id: int | None) -> ResponseReturnValue:
    t = db.get_or_404(ImagingTest, test_id) if test_id else None
    form = TestForm(obj=t)
    form.modality.choices = [(m.id, f"{m.code} — {m.name}") for m in service.all_modalities()]
    from ..worklists.templates import all_templates

    names = [t.name for t in all_templates()]
    form.worklist_template.choices = [("", _("Default template"))] + [(n, n) for n in names] + (
        [(t.worklist_template, _("%(name)s (missing)", name=t.worklist_template))]
        if t is not None and t.worklist_template and t.worklist_template not in names else [])
    if request.method == "GET" and t is not None:
        form.modality.data = t.modality_id
    if form.validate_on_submit():
        mt = db.session.get(ModalityType, form.modality.data)
        try:
            if mt is None:
                raise service.CatalogError(_("Choose a modality type."), "modality")
            saved = service.save_test(t, code=form.code.data or "", name=form.name.data or "", modality=mt,
                                      ae_title=form.ae_title.data or "",
                                      worklist_template=form.worklist_template.data or "",
                                      active=form.active.data)
        except service.CatalogError as exc:
            db.session.rollback()
            getattr(form, exc.field or "code").errors.append(str(exc))
        else:
            db.session.commit()
            flash(_("Imaging test saved."), "success")
            _flash_lost_worklists(saved)
            return redirect(url_for("catalog.index"))
    status = 400 if request.method == "POST" else 200
    return render_template("catalog/test_form.html", form=form, test=t), status


def _flash_lost_worklists(test: ImagingTest) -> None:
    """Saving a test rewrites its waiting worklist items; one that could not
    be rewritten has lost its file, and the person who saved must know."""
    from ..imaging.workflow import waiting_without_file
    from ..models import ImagingRequest

    lost = waiting_without_file(ImagingRequest.test_id == test.id)
    if lost:
        flash(ngettext("%(num)d waiting request of this test is no longer in the worklist: %(accession)s: %(problem)s",
                       "%(num)d waiting requests of this test are no longer in the worklist: %(accession)s: "
                       "%(problem)s", len(lost), accession=lost[0].accession_number,
                       problem=lost[0].worklist_problem), "error")


@bp.route("/tests/<int:test_id>/report-templates")
@requires(Action.MANAGE_CATALOG)
def report_templates_page(test_id: int) -> ResponseReturnValue:
    t = db.get_or_404(ImagingTest, test_id)
    return render_template("catalog/report_templates.html", test=t, templates=report_templates.of_test(t),
                           action_form=EmptyForm())


@bp.route("/tests/<int:test_id>/report-templates/new", methods=["GET", "POST"], defaults={"template_id": None})
@bp.route("/tests/<int:test_id>/report-templates/<int:template_id>", methods=["GET", "POST"])
@requires(Action.MANAGE_CATALOG)
def report_template(test_id: int, template_id: int | None) -> ResponseReturnValue:
    t = db.get_or_404(ImagingTest, test_id)
    tpl = db.get_or_404(ReportTemplate, template_id) if template_id else None
    if tpl is not None and tpl.test_id != t.id:
        return redirect(url_for("catalog.report_template", test_id=tpl.test_id, template_id=tpl.id))
    form = ReportTemplateForm(obj=tpl)
    if form.validate_on_submit():
        try:
            report_templates.save(tpl, t, name=form.name.data or "", text=form.text.data or "")
        except service.CatalogError as exc:
            db.session.rollback()
            getattr(form, exc.field or "name").errors.append(str(exc))
        else:
            db.session.commit()
            flash(_("Report template saved."), "success")
            return redirect(url_for("catalog.report_templates_page", test_id=t.id))
    status = 400 if request.method == "POST" else 200
    return render_template("catalog/report_template_form.html", form=form, test=t, template=tpl), status


@bp.route("/report-templates/<int:template_id>/delete", methods=["POST"])
@requires(Action.MANAGE_CATALOG)
def delete_report_template(template_id: int) -> ResponseReturnValue:
    tpl = db.get_or_404(ReportTemplate, template_id)
    test_id = tpl.test_id
    report_templates.delete(tpl)  # CSRF is checked for every POST (extensions.csrf)
    db.session.commit()
    flash(_("Report template deleted."), "success")
    return redirect(url_for("catalog.report_templates_page", test_id=test_id))
