from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional


class ServerForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF is untyped
    label = StringField("Label", validators=[DataRequired(), Length(max=64)],
                        description="A short name staff recognise, e.g. 'X-ray room'.")
    url = StringField("REST URL", validators=[DataRequired(), Length(max=500)],
                      description="How ghimaging reaches Orthanc, e.g. http://127.0.0.1:8042")
    browser_url = StringField("Browser URL", validators=[Optional(), Length(max=500)],
                              description="How a browser in the clinic reaches Orthanc for viewers; empty: the REST URL.")
    username = StringField("Username", validators=[Optional(), Length(max=200)])
    password = PasswordField("Password", validators=[Optional(), Length(max=500)])


class LinkForm(FlaskForm):  # type: ignore[misc]
    puid = StringField("Local patient PUID", validators=[DataRequired(), Length(max=64)])
