from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    Field,
    FieldList,
    Form,
    FormField,
    HiddenField,
    SelectField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..auth.forms import MultiCheckboxField
from ..models import ReportStyle
from .workflow import date_problem


class Plausible:
    """A date in the years the workflow accepts (see workflow.date_problem):
    the page says so at the field instead of failing later."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, form: object, field: Field) -> None:
        problem = date_problem(field.data, self.what)
        if problem:
            raise ValidationError(problem)


class OrderForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    patient = StringField("Patient", validators=[DataRequired("Choose a patient."), Length(max=64)],
                          description="Type a name or PUID and pick from the list.")
    tests = MultiCheckboxField("Tests", coerce=int, validators=[DataRequired("Choose at least one test.")])
    urgent = BooleanField("Urgent")
    physician = SelectField("Requesting physician", coerce=int)
    scheduled_date = DateField("Scheduled date", validators=[Optional(), Plausible("The scheduled date")])
    scheduled_time = TimeField("Scheduled time", validators=[Optional()])
    clinical_context = TextAreaField("Clinical context", validators=[Optional(), Length(max=4000)],
                                     description="Symptoms, question to answer, relevant history.")
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=4000)])


class EditRequestForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    urgent = BooleanField("Urgent")
    physician = SelectField("Requesting physician", coerce=int)
    scheduled_date = DateField("Scheduled date", validators=[Optional(), Plausible("The scheduled date")])
    scheduled_time = TimeField("Scheduled time", validators=[Optional()])
    clinical_context = TextAreaField("Clinical context", validators=[Optional(), Length(max=4000)])
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=4000)])


class CancelForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    reason = TextAreaField("Reason", validators=[DataRequired("Give a reason for cancelling."), Length(max=2000)])


class ImageSlot(Form):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    file = FileField("Image (PNG or JPEG)")
    caption = StringField("Caption", validators=[Optional(), Length(max=500)])


class ResultForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    radiologist = SelectField("Evaluating radiologist", coerce=int)
    result_date = DateField("Date", validators=[DataRequired("Give the date of the result."),
                                                Plausible("The date of the result")])
    report_style = SelectField("Report style", choices=[(s.value, s.label) for s in ReportStyle])
    report = TextAreaField("Report", validators=[Optional(), Length(max=100_000)])
    # Not "images": ResultForm(obj=result) would fill the upload slots from
    # the result's stored images.
    new_images = FieldList(FormField(ImageSlot), min_entries=3, max_entries=12)
    # The saved report's version the desk was opened on (drafts.version_of;
    # "" for a new result): a save over a later one is refused, not applied.
    version = HiddenField(default="")


class AddendumForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    text = TextAreaField("Addendum", validators=[DataRequired("The addendum is empty."), Length(max=20_000)])
