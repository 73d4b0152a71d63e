from __future__ import annotations

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class ModalityForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    code = StringField(_l("Code (DICOM Modality)"), validators=[DataRequired(), Length(max=16)])
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)])


class TestForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    code = StringField(_l("Code"), validators=[DataRequired(), Length(max=32)])
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    modality = SelectField(_l("Modality type"), coerce=int, validators=[DataRequired()])
    ae_title = StringField(_l("Scheduled station AE title"), validators=[Optional(), Length(max=16)],
                           description=_l("Required: the AE title of the modality that performs this test; "
                                                  "the worklist offers the test to that modality."),
                           render_kw={"required": True})
    worklist_template = SelectField(_l("Worklist template"), validators=[Optional()], validate_choice=True,
                                    description=_l("The template that writes this test's worklist items."))
    active = BooleanField(_l("Active (can be ordered)"), default=True)


class ReportTemplateForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    name = StringField(_l("Name"), validators=[DataRequired(_l("Give the template a name.")),
                                               Length(max=100, message=_l("At most %(max)d characters.", max=100))],
                       description=_l("What the radiologist picks on the desk, e.g. “Normal chest, PA”."))
    text = TextAreaField(_l("Text"), validators=[DataRequired(_l("Write the text the template inserts.")),
                                                 Length(max=20_000, message=_l("At most %(max)s characters.",
                                                                               max="20,000"))],
                         description=_l("Inserted at the cursor of the report; the radiologist edits it there."))
