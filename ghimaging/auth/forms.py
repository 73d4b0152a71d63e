from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, PasswordField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

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


class LoginForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    remember = BooleanField("Keep me signed in on this device")


class ChangePasswordForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), _strong, Length(max=200)])
    confirm = PasswordField(
        "Repeat new password", validators=[DataRequired(), EqualTo("new_password", "Passwords do not match.")]
    )
    revoke_tokens = BooleanField("Also revoke my API tokens",
                                 description="Scripts using them stop working until given a new token.")


class UserForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    full_name = StringField("Full name", validators=[Optional(), Length(max=200)])
    email = EmailField("Email", validators=[Optional(), Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an email address like name@example.org."), Length(max=200)])
    roles = MultiCheckboxField("Roles", choices=ROLE_CHOICES,
                               validators=[DataRequired("Choose at least one role.")])
    active = BooleanField("Active", default=True)
    password = PasswordField("Password", validators=[DataRequired(), _strong, Length(max=200)],
                             description="A one-time password: they choose their own when they first sign in.")


class EditUserForm(UserForm):
    password = None
    username = None


class ServiceAccountForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """All an administrator changes on a program's account."""

    active = BooleanField("Active", description="While disabled its tokens are refused; they work again when "
                                                "it is enabled.")


class ResetPasswordForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    new_password = PasswordField("New password", validators=[DataRequired(), _strong, Length(max=200)],
                                 description="A one-time password: they choose their own at the next sign-in.")


class TokenForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    name = StringField("Token name", validators=[Optional(), Length(max=100)],
                       description="What it is for, e.g. 'HIS interface'.")


class ClearThrottleForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    key = StringField("Throttle", validators=[DataRequired(), Length(max=200)])


class CredentialsForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    credentials = StringField("Credentials on printed reports", validators=[Optional(), Length(max=200)],
                              description="The line under your name in a report's signature block, "
                                          "e.g. 'MD, Consultant Radiologist'.")


class EmptyForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """A form with only the CSRF token, for buttons that post."""
