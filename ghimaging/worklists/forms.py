"""The worklist template editor's form. Labels and descriptions are made at
import time, so they are lazy translations (``_l``)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .charsets import choices


class TemplateForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)])
    charset = SelectField(_l("Character set (SpecificCharacterSet)"))
    encoding = StringField(_l("Python encoding"), validators=[DataRequired(), Length(max=32)],
                           description=_l("Must match the character set: utf-8 for ISO_IR 192, latin-1 for "
                                          "ISO_IR 100, gb18030 for GB18030."))
    body = TextAreaField(_l("Template"), validators=[DataRequired()])
    comment = TextAreaField(_l("Comment"), validators=[Optional(), Length(max=2000)])
    is_default = BooleanField(_l("Default template (used by tests without one)"))
    utf8_fallback = BooleanField(
        _l("Fall back to ISO_IR 192 (UTF-8) when a value does not fit the character set"),
        description=_l("Off: a request whose patient name (or another value) this character set cannot hold is "
                       "refused at submit, with the characters named. On: that item is written in ISO_IR 192 "
                       "instead, and its request page says so; the modality must then understand UTF-8."))
    preview_request = SelectField(_l("Preview with request"), coerce=int, validate_choice=False)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.charset.choices = choices()
