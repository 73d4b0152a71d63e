from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
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

from .. import clock
from ..auth.forms import MultiCheckboxField
from ..models import ReportStyle
from .workflow import date_problem, scheduled_in_past


class Plausible:
    """A date in the years the workflow accepts (see workflow.date_problem):
    the page says so at the field instead of failing later."""

    def __init__(self, what: object) -> None:
        self.what = what  # lazy: translated when the form is checked

    def __call__(self, form: object, field: Field) -> None:
        problem = date_problem(field.data, str(self.what))
        if problem:
            raise ValidationError(problem)


class Stored(Field):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    """The value the form was opened with, from ``obj`` only: never drawn
    and never read from what is posted, so a post cannot change it."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        pass

    def __call__(self, **kwargs: Any) -> str:
        return ""


class Scheduling:
    """A scheduled date and time (the clinic's wall clock) that lies in the
    past (:func:`workflow.scheduled_in_past`) is refused at the date field
    until "Yes, schedule in the past" is ticked; the box is shown from then
    on (``asks_past``). An edit that keeps the time it was opened with is
    not asked again (``scheduled_at``, the stored value)."""

    scheduled_date: Field
    scheduled_time: Field
    confirm_past: Field
    asks_past = False

    def scheduled_utc(self) -> datetime | None:
        if not self.scheduled_date.data:
            return None
        return clock.to_utc(datetime.combine(self.scheduled_date.data,
                                             self.scheduled_time.data or datetime.min.time()))

    def validate_scheduled_date(self, field: Field) -> None:
        self.asks_past = bool(self.confirm_past.data)
        if field.errors:
            return
        when = self.scheduled_utc()
        if when is None or not scheduled_in_past(when):
            return
        was = getattr(self, "scheduled_at", None)
        if was is not None and isinstance(was.data, datetime) and \
                was.data.replace(second=0, microsecond=0) == when:
            return  # not changed by this edit: said when it was set
        self.asks_past = True
        if not self.confirm_past.data:
            raise ValidationError(_("This time is in the past. Tick \u201cYes, schedule in the past\u201d if "
                                    "that is what you mean."))


class OrderForm(Scheduling, FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    patient = StringField(_l("Patient"), validators=[DataRequired(_l("Choose a patient.")), Length(max=64)],
                          description=_l("Type a name or PUID, or a birth date, and pick from the list."))
    tests = MultiCheckboxField(_l("Tests"), coerce=int, validators=[DataRequired(_l("Choose at least one test."))])
    urgent = BooleanField(_l("Urgent"))
    physician = SelectField(_l("Requesting physician"), coerce=int)
    scheduled_date = DateField(_l("Scheduled date"), validators=[Optional(), Plausible(_l("The scheduled date"))])
    scheduled_time = TimeField(_l("Scheduled time"), validators=[Optional()])
    confirm_past = BooleanField(_l("Yes, schedule in the past"))
    clinical_context = TextAreaField(_l("Clinical context"), validators=[Optional(), Length(max=4000)],
                                     description=_l("Symptoms, question to answer, relevant history."))
    comment = TextAreaField(_l("Comment"), validators=[Optional(), Length(max=4000)])

    def validate_patient(self, field: Field) -> None:
        """Said with the other fields' errors: the patient the box names
        (:func:`ordering.find_patient`: a PUID, or one match of a name or
        birth date; never one of several). A patient found by name or birth
        date is not ordered for yet: the box is given their PUID and the
        form comes back with their name, birth date and alerts shown, so a
        person looks at who it is before the order is sent (an order for the
        wrong person is the worst outcome; one more press is the cheapest)."""
        from ..ui import day
        from .ordering import find_patient
        from .workflow import ValidationError as Refused

        typed = (field.data or "").strip()
        try:
            patient = find_patient(typed)
        except Refused as exc:
            raise ValidationError(exc.errors["patient"]) from None
        if patient.puid != typed:
            field.data = patient.puid
            raise ValidationError(_(
                "Found %(name)s (PUID %(puid)s, born %(born)s). Check that this is the patient, and their "
                "alerts below, then send the order again.", name=patient.full_name, puid=patient.puid,
                born=day(patient.birth_date) if patient.birth_date else "\u2014"))


class EditRequestForm(Scheduling, FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    urgent = BooleanField(_l("Urgent"))
    physician = SelectField(_l("Requesting physician"), coerce=int)
    scheduled_date = DateField(_l("Scheduled date"), validators=[Optional(), Plausible(_l("The scheduled date"))])
    scheduled_time = TimeField(_l("Scheduled time"), validators=[Optional()])
    confirm_past = BooleanField(_l("Yes, schedule in the past"))
    clinical_context = TextAreaField(_l("Clinical context"), validators=[Optional(), Length(max=4000)])
    comment = TextAreaField(_l("Comment"), validators=[Optional(), Length(max=4000)])
    scheduled_at = Stored()  # EditRequestForm(obj=req): the time the request had when opened


class CancelForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(_l("Give a reason for cancelling.")), Length(max=2000)])


class ImageSlot(Form):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    file = FileField(_l("Image (PNG or JPEG)"))
    caption = StringField(_l("Caption"), validators=[Optional(), Length(max=500)])


class ResultForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    radiologist = SelectField(_l("Evaluating radiologist"), coerce=int)
    result_date = DateField(_l("Date"), validators=[DataRequired(_l("Give the date of the result.")),
                                                Plausible(_l("The date of the result"))])
    report_style = SelectField(_l("Report style"), choices=[(s.value, s.lazy_label) for s in ReportStyle])
    report = TextAreaField(_l("Report"), validators=[Optional(), Length(max=100_000)])
    # Not "images": ResultForm(obj=result) would fill the upload slots from
    # the result's stored images.
    new_images = FieldList(FormField(ImageSlot), min_entries=3, max_entries=12)
    # The saved report's version the desk was opened on (drafts.version_of;
    # "" for a new result): a save over a later one is refused, not applied.
    version = HiddenField(default="")


class AddendumForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF and WTForms ship no types
    text = TextAreaField(_l("Addendum"), validators=[DataRequired(_l("The addendum is empty.")), Length(max=20_000)])
