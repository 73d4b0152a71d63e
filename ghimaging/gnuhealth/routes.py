"""GNU Health pages: settings and "Test connection", the outbox, test
mapping, and the patient lookup used from the order form and the patient
list. Views parse, call a service, commit once, render or redirect."""

from __future__ import annotations

from typing import TypeGuard

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from .. import crypto
from ..auth.decorators import requires
from ..exceptions import Conflict, Invalid, NotFound
from ..extensions import db
from ..models import ImagingRequest, ImagingTest, LinkKind, OutboxState
from ..permissions import Action
from ..querytools import bounded_int
from . import links, outbox, pull, status, worker
from .client import GnuHealthError
from .remote import Remote
from .settings import (
    SettingsError,
    active_config,
    client_for,
    configure,
    get_config,
    page_deadline,
    run_check,
    set_enabled,
)

bp = Blueprint("gnuhealth", __name__)


class SettingsForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF is untyped
    enabled = BooleanField(_l("Sync with GNU Health"))
    url = StringField(_l("Server address"), validators=[DataRequired(), Length(max=500)],
                      description=_l("trytond's address, e.g. %(example)s", example="http://gnuhealth.local:8000/"))
    database = StringField(_l("Database"), validators=[DataRequired(), Length(max=100)])
    username = StringField(_l("User"), validators=[DataRequired(), Length(max=200)],
                           description=_l("A dedicated GNU Health user (see the README for its groups)."))
    password = PasswordField(_l("Password"), validators=[Optional(), Length(max=500)],
                             description=_l("Leave empty to keep the saved password (at the same address only: "
                                            "a new server, scheme or port needs it again)."))
    default_professional_id = IntegerField(_l("Default professional (GNU Health id)"),
                                           validators=[Optional(), NumberRange(min=1, max=2**31 - 1)],
                                           description=_l("The doctor of requests whose ordering user has no "
                                                          "professional in GNU Health."))


@bp.route("/admin/gnuhealth/", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def settings_page() -> ResponseReturnValue:
    cfg = get_config()
    if request.method == "GET":
        form = SettingsForm(data={"enabled": cfg.enabled if cfg else True, "url": cfg.url if cfg else "",
                                  "database": cfg.database if cfg else "", "username": cfg.username if cfg else "",
                                  "default_professional_id": cfg.default_professional_id if cfg else None})
    else:
        form = SettingsForm()
    if form.validate_on_submit():
        try:
            report = configure(url=form.url.data, database=form.database.data, username=form.username.data,
                               password=form.password.data or None, enabled=form.enabled.data,
                               default_professional_id=form.default_professional_id.data,
                               total=page_deadline())
        except SettingsError as exc:
            getattr(form, exc.field or "url").errors.append(str(exc))
        except (GnuHealthError, crypto.CredentialError) as exc:
            flash(_("Not saved: %(error)s", error=exc), "error")
        else:
            db.session.commit()
            flash(_("Saved. %(report)s", report=" ".join(report.lines())), "success")
            return redirect(url_for("gnuhealth.settings_page"))
    return render_template("gnuhealth/settings.html", form=form, cfg=get_config(), counts=outbox.counts(),
                           problems=status.import_problems()), 400 if request.method == "POST" else 200


@bp.route("/admin/gnuhealth/check", methods=["POST"])
@requires(Action.CONFIGURE)
def check() -> ResponseReturnValue:
    """Test the saved settings; the outcome, a failure too, is recorded."""
    try:
        report = run_check(total=page_deadline())
    except (GnuHealthError, SettingsError, crypto.CredentialError) as exc:
        flash(_("Connection failed: %(error)s", error=exc), "error")
    else:
        flash(_("Connection works. %(report)s", report=" ".join(report.lines())), "success")
    db.session.commit()
    return redirect(url_for("gnuhealth.settings_page"))


@bp.route("/admin/gnuhealth/enable", methods=["POST"])
@requires(Action.CONFIGURE)
def enable() -> ResponseReturnValue:
    try:
        set_enabled(request.form.get("enabled") == "1")
    except SettingsError as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
    return redirect(url_for("gnuhealth.settings_page"))


@bp.route("/admin/gnuhealth/sync", methods=["POST"])
@requires(Action.CONFIGURE)
def sync_now() -> ResponseReturnValue:
    if active_config() is None:
        flash(_("The GNU Health sync is off or not configured."), "error")
        return redirect(url_for("gnuhealth.settings_page"))
    # One pull under the page's deadline; the outbox (up to a thousand
    # items) is the background loop's work: woken now, it sends at once.
    summary = worker.run_pull(total=page_deadline())
    outbox.wake.set()
    pending = outbox.counts()[OutboxState.PENDING.value]
    if summary.error:
        pulled = _("Pull failed: %(error)s", error=summary.error)
    else:
        pulled = _("Pull: %(seen)s requested in GNU Health, %(imported)s imported, %(problems)s problem(s).",
                   seen=summary.seen, imported=len(summary.imported), problems=len(summary.problems))
    flash(_("%(pull)s Outbox: %(pending)s pending, being sent in the background.", pull=pulled, pending=pending),
          "error" if summary.error else "success")
    return redirect(url_for("gnuhealth.settings_page"))


@bp.route("/admin/gnuhealth/outbox")
@requires(Action.CONFIGURE)
def outbox_page() -> ResponseReturnValue:
    state = request.args.get("state", "")
    if state not in {"", *(s.value for s in OutboxState)}:
        state = ""
    return render_template("gnuhealth/outbox.html", items=outbox.listing(state or None), state=state,
                           counts=outbox.counts())


@bp.route("/admin/gnuhealth/outbox/<int:item_id>/retry", methods=["POST"])
@requires(Action.CONFIGURE)
def retry_item(item_id: int) -> ResponseReturnValue:
    try:
        outbox.retry(item_id)
    except (NotFound, Conflict) as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(_("Item %(id)s will be sent again now.", id=item_id), "success")
    return redirect(url_for("gnuhealth.outbox_page"))


@bp.route("/gnuhealth/requests/<int:request_id>/retry", methods=["POST"])
@requires(Action.RETRY_SYNC)
def retry_request(request_id: int) -> ResponseReturnValue:
    req = db.get_or_404(ImagingRequest, request_id)
    n = outbox.retry_request(req)
    db.session.commit()
    flash(ngettext("GNU Health: %(num)d change will be sent again now.",
                   "GNU Health: %(num)d changes will be sent again now.", n) if n else _("GNU Health: nothing to send."),
          "success" if n else "info")
    nxt = request.form.get("next")
    return redirect(nxt if _local(nxt) else url_for("imaging.view_request", request_id=req.id))


def _local(target: str | None) -> TypeGuard[str]:
    """A path on this site: "/..." but not "//host" nor "/" + backslash +
    "host" (browsers read a backslash as a slash), and no control characters
    (browsers drop tabs and newlines, so "/", tab, "/host" is "//host")."""
    if not target or not target.startswith("/"):
        return False
    if "/" in target[1:2] or "\\" in target[:2]:
        return False
    return not any(ord(c) < 32 or ord(c) == 127 for c in target)


@bp.route("/admin/gnuhealth/tests", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def tests_page() -> ResponseReturnValue:
    """Local tests and the GNU Health test each is sent as (by code unless mapped by hand)."""
    if request.method == "POST":
        test = db.get_or_404(ImagingTest, bounded_int(request.form.get("test_id")) or 0)
        raw = (request.form.get("remote_id") or "").strip()
        remote_id = bounded_int(raw) if raw else None
        if raw and remote_id is None:
            flash(_("The GNU Health test id must be a whole number from 1 to %(max)s.", max=2147483647), "error")
            return redirect(url_for("gnuhealth.tests_page"))
        try:
            links.map_test(test.id, remote_id)
        except Conflict as exc:
            flash(str(exc), "error")
            return redirect(url_for("gnuhealth.tests_page"))
        db.session.commit()
        flash(_("%(code)s: mapping saved.", code=test.code), "success")
        return redirect(url_for("gnuhealth.tests_page"))
    remote_tests, error = [], ""
    cfg = get_config()
    if cfg is not None and cfg.configured:
        try:
            with client_for(cfg, total=page_deadline()) as client:
                remote_tests = Remote(client).tests()
        except (GnuHealthError, crypto.CredentialError) as exc:
            error = str(exc)
    tests = db.session.scalars(select(ImagingTest).order_by(ImagingTest.code)).all()
    mapped = {t.id: links.get(LinkKind.TEST, t.id) for t in tests}
    return render_template("gnuhealth/tests.html", tests=tests, mapped=mapped, remote_tests=remote_tests,
                           error=error)


@bp.route("/gnuhealth/patients")
@requires(Action.VIEW)
def patient_search() -> ResponseReturnValue:
    """Find GNU Health patients by PUID or name, to import them."""
    q = (request.args.get("q") or "").strip()
    results, error = [], ""
    cfg = active_config()
    if q and cfg is not None:
        try:
            with client_for(cfg, total=page_deadline()) as client:
                results = pull.search_patients(client, q)
        except (GnuHealthError, Invalid, crypto.CredentialError) as exc:
            error = str(exc)
    return render_template("gnuhealth/patients.html", q=q, results=results, error=error, enabled=cfg is not None,
                           next=request.args.get("next", "") if _local(request.args.get("next")) else "")


@bp.route("/gnuhealth/patients/import", methods=["POST"])
@requires(Action.EDIT_PATIENTS)
def patient_import() -> ResponseReturnValue:
    cfg = active_config()
    remote_id = bounded_int(request.form.get("remote_id"))
    if cfg is None or not remote_id:
        flash(_("GNU Health sync is off, or no patient was chosen (a GNU Health patient id is a whole number "
                "from 1 to %(max)s).", max=2147483647), "error")
        return redirect(url_for("gnuhealth.patient_search"))
    try:
        with client_for(cfg, total=page_deadline()) as client:
            patient = pull.import_patient(client, remote_id)
    except (GnuHealthError, pull.ImportProblem, crypto.CredentialError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("gnuhealth.patient_search", q=request.form.get("q", "")))
    db.session.commit()
    flash(_("%(name)s (%(puid)s) imported from GNU Health.", name=patient.full_name, puid=patient.puid), "success")
    nxt = request.form.get("next")
    if _local(nxt):
        sep = "&" if "?" in nxt else "?"
        return redirect(f"{nxt}{sep}patient_id={patient.id}")
    return redirect(url_for("patients.view", patient_id=patient.id))
