from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..auth.decorators import requires
from ..extensions import db
from ..permissions import Action
from . import service

bp = Blueprint("settings", __name__, url_prefix="/admin/settings")


class ClinicForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    clinic_name = StringField("Clinic name", validators=[DataRequired(), Length(max=200)])
    clinic_address = TextAreaField("Address", validators=[Optional(), Length(max=1000)])
    clinic_phone = StringField("Phone", validators=[Optional(), Length(max=100)])
    report_footer = TextAreaField("Report footer", validators=[Optional(), Length(max=1000)],
                                  description="Printed at the bottom of every report.")


@bp.route("/", methods=["GET", "POST"])
@requires(Action.CONFIGURE)
def clinic() -> ResponseReturnValue:
    form = ClinicForm(data=service.clinic_settings()) if request.method == "GET" else ClinicForm()
    if form.validate_on_submit():
        service.save_clinic_settings({k: getattr(form, k).data for k in service.CLINIC_KEYS})
        db.session.commit()
        flash("Settings saved.", "success")
        return redirect(url_for("settings.clinic"))
    status = 400 if request.method == "POST" else 200
    return render_template("settings/clinic.html", form=form), status
