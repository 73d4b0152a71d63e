from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class ModalityForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    code = StringField("Code (DICOM Modality)", validators=[DataRequired(), Length(max=16)])
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])


class TestForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    code = StringField("Code", validators=[DataRequired(), Length(max=32)])
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    modality = SelectField("Modality type", coerce=int, validators=[DataRequired()])
    ae_title = StringField("Scheduled station AE title", validators=[Optional(), Length(max=16)],
                           description="Required: the AE title of the modality that performs this test; "
                                       "the worklist offers the test to that modality.",
                           render_kw={"required": True})
    worklist_template = SelectField("Worklist template", validators=[Optional()], validate_choice=True,
                                    description="The template that writes this test's worklist items.")
    active = BooleanField("Active (can be ordered)", default=True)


class ReportTemplateForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    name = StringField("Name", validators=[DataRequired("Give the template a name."), Length(max=100, message="At most 100 characters.")],
                       description="What the radiologist picks on the desk, e.g. “Normal chest, PA”.")
    text = TextAreaField("Text", validators=[DataRequired("Write the text the template inserts."),
                                             Length(max=20_000, message="At most 20,000 characters.")],
                         description="Inserted at the cursor of the report; the radiologist edits it there.")
