from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..models import Sex


class PatientForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    puid = StringField("PUID", validators=[DataRequired(), Length(max=64)],
                       description="Patient identifier; it becomes the DICOM PatientID.")
    family_name = StringField("Family name", validators=[DataRequired(), Length(max=100)])
    given_name = StringField("Given name(s)", validators=[Optional(), Length(max=100)])
    birth_date = DateField("Birth date", validators=[Optional()])
    sex = SelectField("Sex", choices=[("", "—")] + [(s.value, s.label) for s in Sex],
                      validators=[DataRequired("Choose F, M or O.")])
    phone = StringField("Phone", validators=[Optional(), Length(max=50)])
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=5000)])
    alerts = TextAreaField("Alerts and allergies (one per line)",
                           validators=[Optional(), Length(max=2000, message="At most 2000 characters.")],
                           description="Shown in red on the order form and the reporting desk.")
