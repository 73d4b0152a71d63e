"""The forms of the sign-in, account and user-administration pages. Labels,
descriptions, choices and validator messages are defined at import time,
so they are lazy translations (``_l``): each renders in the reader's
language."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..i18n import LANGUAGES
from ..models import Role
from .service import password_problem


class MultiCheckboxField(SelectMultipleField):  # type: ignore[misc]  # WTForms: no types installed
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _strong(form: FlaskForm, field: Field) -> None:
    problem = password_problem(field.data or "")
    if problem:
        raise ValidationError(problem)


ROLE_CHOICES = [(r.value, r.label) for r in Role]

#: Each language named in itself (a person who cannot read the page's
#: current language still finds their own); "" follows the browser.
LANGUAGE_NAMES = {"en": "English", "es": "Español", "de": "Deutsch"}
LANGUAGE_CHOICES = [("", _l("Automatic (the browser's language)"))] + [
    (code, LANGUAGE_NAMES[code]) for code in LANGUAGES]


class LoginForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    remember = BooleanField(_l("Keep me signed in on this device"))


class ChangePasswordForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    current_password = PasswordField(_l("Current password"), validators=[DataRequired()])
    new_password = PasswordField(_l("New password"), validators=[DataRequired(), _strong, Length(max=200)])
    confirm = PasswordField(
        _l("Repeat new password"), validators=[DataRequired(), EqualTo("new_password", _l("Passwords do not match."))]
    )
    revoke_tokens = BooleanField(_l("Also revoke my API tokens"),
                                 description=_l("Scripts using them stop working until given a new token."))


class LanguageForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """One's own language for the pages (stored on the account)."""

    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES,
                           description=_l("Automatic follows your browser's language setting."))


class UserForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)])
    full_name = StringField(_l("Full name"), validators=[Optional(), Length(max=200)])
    email = EmailField(_l("Email"), validators=[
        Optional(), Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Enter an email address like name@example.org.")),
        Length(max=200)])
    roles = MultiCheckboxField(_l("Roles"), choices=ROLE_CHOICES,
                               validators=[DataRequired(_l("Choose at least one role."))])
    active = BooleanField(_l("Active"), default=True)
    password = PasswordField(_l("Password"), validators=[DataRequired(), _strong, Length(max=200)],
                             description=_l("A one-time password: they choose their own when they first sign in."))


class EditUserForm(UserForm):
    password = None
    username = None


class ServiceAccountForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """All an administrator changes on a program's account."""

    active = BooleanField(_l("Active"), description=_l("While disabled its tokens are refused; they work again "
                                                       "when it is enabled."))


class ResetPasswordForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    new_password = PasswordField(_l("New password"), validators=[DataRequired(), _strong, Length(max=200)],
                                 description=_l("A one-time password: they choose their own at the next sign-in."))


class TokenForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    name = StringField(_l("Token name"), validators=[Optional(), Length(max=100)],
                       description=_l("What it is for, e.g. 'HIS interface'."))


class ClearThrottleForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    key = StringField(_l("Throttle"), validators=[DataRequired(), Length(max=200)])


class CredentialsForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    credentials = StringField(_l("Credentials on printed reports"), validators=[Optional(), Length(max=200)],
                              description=_l("The line under your name in a report's signature block, "
                                             "e.g. 'MD, Consultant Radiologist'."))


class EmptyForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """A form with only the CSRF token, for buttons that post."""
