from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .charsets import choices


class TemplateForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    charset = SelectField("Character set (SpecificCharacterSet)")
    encoding = StringField("Python encoding", validators=[DataRequired(), Length(max=32)],
                           description="Must match the character set: utf-8 for ISO_IR 192, latin-1 for ISO_IR 100, gb18030 for GB18030.")
    body = TextAreaField("Template", validators=[DataRequired()])
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=2000)])
    is_default = BooleanField("Default template (used by tests without one)")
    utf8_fallback = BooleanField(
        "Fall back to ISO_IR 192 (UTF-8) when a value does not fit the character set",
        description="Off: a request whose patient name (or another value) this character set cannot hold is "
                    "refused at submit, with the characters named. On: that item is written in ISO_IR 192 "
                    "instead, and its request page says so; the modality must then understand UTF-8.")
    preview_request = SelectField("Preview with request", coerce=int, validate_choice=False)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.charset.choices = choices()
