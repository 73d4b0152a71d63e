"""Pages for results: the reporting desk (writing and editing a result
beside the images, with templates and an autosaved draft), viewing,
finalising, addenda, key images from Orthanc, and the report images
themselves.

Each view parses its form, calls one service of :mod:`.reporting`, commits
once and redirects; a refused change is said at its field or flashed, with
nothing of it kept."""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_login import current_user
from sqlalchemy import select

from .. import clock
from ..auth.decorators import requires
from ..auth.forms import EmptyForm
from ..extensions import db
from ..models import ImagingRequest, Result, ResultImage, Role
from ..permissions import Action
from . import desk, drafts, images, people, reporting, workflow
from .forms import AddendumForm, ResultForm
from .routes import bp, field_errors, step


def _new_images(form: ResultForm) -> list[reporting.NewImage]:
    out = []
    for slot in form.new_images:
        f = slot.form.file.data
        if f and getattr(f, "filename", ""):
            out.append(reporting.NewImage(f.stream, f.filename, slot.form.caption.data or ""))
    return out


def _result_page(result: Result, addendum_form: AddendumForm) -> str:
    """Linked studies with their series and, for each series, the instances
    fetched from Orthanc now (instances are not mirrored)."""
    from ..orthanc import instances, matching, servers

    studies: list[tuple[Any, Any, Any]] = []
    for link in matching.studies_of(result.request):
        viewers = servers.viewer_links(link.study.server, link.study)
        series = [(se, instances.of_series(link.study.server, se)) for se in link.study.series]
        studies.append((link, viewers, series))
    return render_template("imaging/result.html", result=result, req=result.request, addendum_form=addendum_form,
                           action_form=EmptyForm(), studies=studies)


def _finalising() -> bool:
    """The desk's "Save and finalise" button (the other one only saves)."""
    return request.form.get("finalise") == "1"


def _desk(form: ResultForm, req: ImagingRequest, result: Result | None, status: int, *,
          conflict: bool = False) -> ResponseReturnValue:
    """The reporting desk. Its GET puts the user's draft back into the editor
    only when it was typed over the report as saved now; a draft from before
    someone's later save is shown beside it to read and copy, and the editor
    keeps the saved report. A refused POST keeps what was typed; a
    ``conflict`` (saved by someone since the page was opened) also shows the
    saved report, and the form now carries its version, so saving again
    replaces it knowingly."""
    context = desk.build(req, current_user)
    draft = context.draft
    fresh = draft is not None and drafts.current(draft, result)
    restored = request.method == "GET" and fresh
    if restored and draft is not None:
        form.report.data = draft.text
    if request.method == "GET" or conflict:
        form.version.data = drafts.version_of(result)
    stale = draft if draft is not None and not fresh else None
    saver = drafts.last_saver(result) if result is not None and (stale or conflict) else None
    return render_template("imaging/result_form.html", form=form, req=req, result=result, desk=context,
                           restored=restored, stale=stale, saver=saver, conflict=conflict,
                           action_form=EmptyForm()), status


def _saved_since(form: ResultForm, result: Result) -> bool:
    """The form was opened on an older version of ``result`` than the saved
    one: say so at the report (the typed text stays in the form)."""
    if form.version.data == drafts.version_of(result):
        return False
    who = drafts.last_saver(result)
    form.report.errors = [*form.report.errors, _(
        "%(name)s saved this report after you opened it, so your text was not saved. It is still below; the "
        "saved report is shown above it. Compare them, then save again to replace the saved report with your "
        "text.", name=who.display_name if who else _("Someone"))]
    return True


@bp.route("/requests/<int:request_id>/result", methods=["GET", "POST"])
@requires(Action.REPORT)
def new_result(request_id: int) -> ResponseReturnValue:
    req = db.get_or_404(ImagingRequest, request_id)
    if req.result is not None and request.method == "POST":
        # Someone saved a result while this desk was open: nothing of theirs
        # is replaced and nothing typed here is lost.
        form = ResultForm()
        form.radiologist.choices = people.choices(Role.RADIOLOGIST)
        form.validate()
        _saved_since(form, req.result)
        return _desk(form, req, req.result, 409, conflict=True)
    if req.result is not None:
        return redirect(url_for("imaging.view_result", result_id=req.result.id))
    if not workflow.can("complete", req):
        flash(_("Request %(number)s is %(state)s; only a requested request can get a result.",
                number=req.accession_number, state=req.state_enum.word), "error")
        return redirect(url_for("imaging.view_request", request_id=req.id))
    form = ResultForm()
    form.radiologist.choices = people.choices(Role.RADIOLOGIST)
    if request.method == "GET":
        form.result_date.data = clock.today()
        if (me := people.or_self(None, current_user, Role.RADIOLOGIST)) is not None:
            form.radiologist.data = me.id  # the one "nobody named: yourself" rule
    if form.validate_on_submit():
        try:
            result = reporting.create_result(
                req, current_user, radiologist=people.by_id(form.radiologist.data),
                result_date=form.result_date.data or clock.today(), report=form.report.data or "",
                report_style=form.report_style.data or "", new_images=_new_images(form), final=_finalising())
            drafts.saved(result, current_user)
        except workflow.ValidationError as exc:
            field_errors(form, exc, "report")
        except workflow.TransitionError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(_("Result finalised; request %(number)s is %(state)s.", number=req.accession_number,
                    state=req.state_enum.word) if result.is_final else
                  _("Preliminary result saved for request %(number)s; it is final once finalised.",
                    number=req.accession_number), "success")
            return redirect(url_for("imaging.view_result", result_id=result.id))
    return _desk(form, req, None, 400 if request.method == "POST" else 200)


@bp.route("/requests/<int:request_id>/draft", methods=["POST"])
@requires(Action.REPORT)
def save_draft(request_id: int) -> ResponseReturnValue:
    """The desk's autosave (JSON, under the page's CSRF token in the
    X-CSRFToken header): ``{"text": "...", "version": "..."}`` (the form's
    hidden version); empty text discards the draft. A draft typed over an
    older saved report than the current one is refused (409)."""
    req = db.session.get(ImagingRequest, request_id)
    if req is None:
        return jsonify(error="not_found", message=_("No such request.")), 404
    if (request.content_length or 0) > drafts.MAX_CHARS * 4 + 1024:
        return jsonify(error="too_large", message=_("The draft is too long to keep.")), 413
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "text" not in body:
        return jsonify(error="invalid", message=_('Send JSON: %(example)s.', example='{"text": "..."}')), 400
    try:
        draft = drafts.save(req, current_user, body["text"], body.get("version"))
    except workflow.ValidationError as exc:
        db.session.rollback()
        return jsonify(error="invalid", message=exc.message, fields=exc.errors), 422
    except workflow.TransitionError as exc:
        db.session.rollback()
        return jsonify(error="conflict", message=exc.message), 409
    db.session.commit()
    return jsonify(saved=draft is not None, saved_at=draft.saved_at.isoformat() + "Z" if draft else None)


@bp.route("/results/<int:result_id>")
@requires(Action.VIEW)
def view_result(result_id: int) -> ResponseReturnValue:
    return _result_page(db.get_or_404(Result, result_id), AddendumForm())


@bp.route("/results/<int:result_id>/key-images", methods=["POST"])
@requires(Action.REPORT)
def add_key_image(result_id: int) -> ResponseReturnValue:
    """Copy an instance's rendered image from Orthanc into the result."""
    from ..models import OrthancServer
    from ..orthanc import instances
    from ..orthanc.client import deadline

    result = db.get_or_404(Result, result_id)
    server = db.session.get(OrthancServer, request.form.get("server_id", type=int) or 0)
    instance_id = request.form.get("instance_id", "")
    if server is None or not instances.valid_id(instance_id):
        abort(404)
    caption = request.form.get("caption", "")
    with deadline(instances.setting("ORTHANC_PAGE_DEADLINE")):  # the radiologist waits
        step(lambda: reporting.add_key_image(result, current_user, server, instance_id, caption),
             _("Key image added to the report."))
    return redirect(url_for("imaging.view_result", result_id=result.id) + "#images")


@bp.route("/results/<int:result_id>/edit", methods=["GET", "POST"])
@requires(Action.REPORT)
def edit_result(result_id: int) -> ResponseReturnValue:
    result = db.get_or_404(Result, result_id)
    if result.is_final:
        flash(_("This result is final; add an addendum instead."), "error")
        return redirect(url_for("imaging.view_result", result_id=result.id))
    form = ResultForm(obj=result)
    form.radiologist.choices = people.choices(Role.RADIOLOGIST)
    if request.method == "GET":
        form.radiologist.data = result.radiologist_id or 0
    if form.validate_on_submit():
        if _saved_since(form, result):
            return _desk(form, result.request, result, 409, conflict=True)
        captions = {img.id: request.form.get(f"caption-{img.id}", img.caption) for img in result.images}
        remove = [img.id for img in result.images if request.form.get(f"remove-{img.id}")]
        try:
            reporting.update_result(
                result, current_user, radiologist=people.by_id(form.radiologist.data),
                result_date=form.result_date.data or result.result_date, report=form.report.data or "",
                report_style=form.report_style.data or "", new_images=_new_images(form), captions=captions,
                remove_images=remove)
            if _finalising():
                reporting.finalise_result(result, current_user)
            drafts.saved(result, current_user)
        except workflow.ValidationError as exc:
            field_errors(form, exc, "report")
        except workflow.TransitionError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            req = result.request
            flash(_("Result finalised; request %(number)s is %(state)s.", number=req.accession_number,
                    state=req.state_enum.word) if result.is_final else _("Result saved."), "success")
            return redirect(url_for("imaging.view_result", result_id=result.id))
    return _desk(form, result.request, result, 400 if request.method == "POST" else 200)


@bp.route("/results/<int:result_id>/finalise", methods=["POST"])
@requires(Action.REPORT)
def finalise_result(result_id: int) -> ResponseReturnValue:
    result = db.get_or_404(Result, result_id)
    step(lambda: reporting.finalise_result(result, current_user), _("Result finalised; it is now read-only."))
    return redirect(url_for("imaging.view_result", result_id=result.id))


@bp.route("/results/<int:result_id>/addenda", methods=["POST"])
@requires(Action.REPORT)
def add_addendum(result_id: int) -> ResponseReturnValue:
    result = db.get_or_404(Result, result_id)
    form = AddendumForm()
    if form.validate_on_submit() and step(lambda: reporting.add_addendum(result, current_user, form.text.data or ""),
                                          _("Addendum added.")):
        return redirect(url_for("imaging.view_result", result_id=result.id))
    return _result_page(result, form), 400


@bp.route("/results/images/<name>")
@requires(Action.VIEW)
def result_image(name: str) -> ResponseReturnValue:
    """Images are patient data: served only to signed-in users, never cached
    by shared caches."""
    if name.endswith(".thumb.jpg"):
        base = name[: -len(".thumb.jpg")]
        candidates = [base + ext for _kind, ext in images.ALLOWED.values()]
    else:
        candidates = [name]
    row = db.session.scalar(select(ResultImage).where(ResultImage.stored_name.in_(candidates)))
    if row is None:
        abort(404)
    resp = send_from_directory(current_app.config["RESULT_IMAGE_DIR"], name, max_age=3600)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp
