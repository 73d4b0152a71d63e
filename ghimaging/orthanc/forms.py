from __future__ import annotations

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional


class ServerForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF is untyped
    label = StringField(_l("Label"), validators=[DataRequired(), Length(max=64)],
                        description=_l("A short name staff recognise, e.g. 'X-ray room'."))
    url = StringField(_l("REST URL"), validators=[DataRequired(), Length(max=500)],
                      description=_l("How ghimaging reaches Orthanc, e.g. %(example)s", example="http://127.0.0.1:8042"))
    browser_url = StringField(_l("Browser URL"), validators=[Optional(), Length(max=500)],
                              description=_l("How a browser in the clinic reaches Orthanc for viewers; "
                                             "empty: the REST URL."))
    username = StringField(_l("Username"), validators=[Optional(), Length(max=200)])
    password = PasswordField(_l("Password"), validators=[Optional(), Length(max=500)])


class LinkForm(FlaskForm):  # type: ignore[misc]
    puid = StringField(_l("Local patient PUID"), validators=[DataRequired(), Length(max=64)])
