"""The clinic's settings page and its logo (served to any signed-in person:
the printed report shows it)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .. import clock
from ..auth.decorators import requires
from ..extensions import db
from ..permissions import Action
from . import service

bp = Blueprint("settings", __name__, url_prefix="/admin/settings")
#: What every signed-in person may fetch (the printed report's logo): not under /admin.
clinic_bp = Blueprint("clinic", __name__, url_prefix="/clinic")

_EXAMPLE_DAY = date(2026, 11, 30)


class ClinicForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    clinic_name = StringField(_l("Clinic name"), validators=[DataRequired(), Length(max=200)])
    clinic_address = TextAreaField(_l("Address"), validators=[Optional(), Length(max=1000)])
    clinic_phone = StringField(_l("Phone"), validators=[Optional(), Length(max=100)])
    report_footer = TextAreaField(_l("Report footer"), validators=[Optional(), Length(max=1000)],
                                  description=_l("Printed at the bottom of every report."))
    time_zone = StringField(_l("Time zone"), validators=[DataRequired(), Length(max=64)],
                            description=_l("Where the clinic is (type a city, e.g. Berlin or La_Paz). Times are "
                                           "shown, typed and sent to the modalities' worklists in this zone."))
    language = SelectField(_l("Language"), choices=list(service.LANGUAGES.items()),
                           description=_l("Of the printed report and PDF; the screens' language when a "
                                          "person has not chosen one."))
    date_format = SelectField(_l("Date format"), choices=[(k, _EXAMPLE_DAY.strftime(p))
                                                      for k, p in clock.DATE_FORMATS.items()],
                              description=_l("How dates are shown, here for 30 November 2026."))
    paper_size = SelectField(_l("Paper size"), choices=list(service.PAPER_SIZES.items()),
                             description=_l("Of the printed report and its PDF."))
    logo = FileField(_l("Logo"), description=_l("PNG or JPEG, at most 2 MB; printed at the top of every report."))
    puid_auto = BooleanField(_l("Allocate PUIDs here"),
                             description=_l("For a clinic without an external patient register: a new patient "
                                            "gets the next PUID of the pattern when saved. Off: the PUID is "
                                            "typed, from the register."))
    puid_pattern = StringField(_l("PUID pattern"), validators=[Optional(), Length(max=60)],
                               description=_l("One run of # is the number, zero-padded: P-###### gives "
                                              "P-000001, P-000002 and so on."))


class RemoveLogoForm(FlaskForm):  # type: ignore[misc]
    pass


_SAVED = (*service.CLINIC_KEYS, *service.LOCALE_KEYS, *service.PUID_KEYS)


@bp.route("/", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def clinic() -> ResponseReturnValue:
    form = ClinicForm(data=service.clinic_settings()) if request.method == "GET" else ClinicForm()
    # The page's language is settled before anything is saved: a refused
    # save must not answer in the language it was refused to set (the
    # clinic's language is the fallback of a browser that names none).
    get_locale()
    if form.validate_on_submit():
        upload = form.logo.data
        data = upload.read(service.LOGO_MAX_BYTES + 1) if upload and upload.filename else b""
        replaced = None
        try:
            values = {k: getattr(form, k).data for k in _SAVED}
            values["puid_auto"] = "1" if form.puid_auto.data else ""
            service.save_clinic_settings(values)
            if upload and upload.filename:
                replaced = service.save_logo(data)
        except service.SettingsError as exc:
            db.session.rollback()
            for name, message in exc.fields.items():
                getattr(form, name).errors = [*getattr(form, name).errors, message]
        else:
            db.session.commit()
            service.discard(replaced)
            flash(_("Settings saved."), "success")
            return redirect(url_for("settings.clinic"))
    status = 400 if request.method == "POST" else 200
    from zoneinfo import available_timezones

    now = datetime.now(UTC).replace(tzinfo=None)
    return render_template("settings/clinic.html", form=form, zones=sorted(available_timezones()),
                           has_logo=service.logo_path() is not None, remove_form=RemoveLogoForm(),
                           clinic_now=now, clinic_offset=clock.utc_offset(now)), status


@bp.route("/logo/remove", methods=["POST"])
@requires(Action.CONFIGURE)
def remove_logo() -> ResponseReturnValue:
    form = RemoveLogoForm()
    if form.validate_on_submit():
        old = service.remove_logo()
        db.session.commit()
        service.discard(old)
        flash(_("Logo removed."), "success")
    return redirect(url_for("settings.clinic"))


@clinic_bp.route("/logo")
@requires(Action.OWN_ACCOUNT)
def logo() -> ResponseReturnValue:
    """The logo for the printed report: signed-in people only, never kept
    by a shared cache."""
    path = service.logo_path()
    if path is None:
        abort(404)
    resp = send_file(path, mimetype=service.logo_mimetype(path), max_age=0, conditional=True, etag=True)
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp
