from __future__ import annotations

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..models import Sex


class PatientForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    # Required unless the clinic allocates PUIDs: the service says so (one
    # rule for the form and the API).
    puid = StringField(_l("PUID"), validators=[Optional(), Length(max=64)],
                       description=_l("Patient identifier; it becomes the DICOM PatientID."))
    family_name = StringField(_l("Family name"), validators=[DataRequired(), Length(max=100)])
    given_name = StringField(_l("Given name(s)"), validators=[Optional(), Length(max=100)])
    birth_date = DateField(_l("Birth date"), validators=[Optional()])
    sex = SelectField(_l("Sex"), choices=[("", "—")] + [(s.value, s.label) for s in Sex],
                      validators=[DataRequired(_l("Choose F, M or O."))])
    phone = StringField(_l("Phone"), validators=[Optional(), Length(max=50)])
    notes = TextAreaField(_l("Notes"), validators=[Optional(), Length(max=5000)])
    alerts = TextAreaField(_l("Alerts and allergies (one per line)"),
                           validators=[Optional(), Length(max=2000, message=_l("At most 2000 characters."))],
                           description=_l("Shown in red on the order form and the reporting desk."))
    # Only when the PUID of a patient with images changes, or changes to one that
    # images carry (an administrator).
    puid_reason = TextAreaField(_l("Why the PUID changes"), validators=[Optional(), Length(max=1000)],
                                description=_l("Images already carry the old or the new PUID; the change is "
                                               "recorded with this reason."))
    # Only after a probable-duplicate warning: the person checked the candidates.
    confirm_new = BooleanField(_l("This is a different person"))
    # The name and birth date the warning was about (service.identity_fingerprint):
    # the tick counts only while they are what is saved.
    confirmed_for = HiddenField()
