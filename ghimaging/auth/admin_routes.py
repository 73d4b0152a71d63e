"""The user-administration pages: people, service accounts and sign-in
throttles (on the ``auth`` blueprint of :mod:`.routes`). Each view calls the
service and commits once when it succeeded.

A form shown again after a failed action shows the account as it is, or as
the administrator typed it, never values the failed request happened not to
carry (issue 13: after a failed password reset "Active" showed unticked,
and saving would have locked the person out)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..models import Role, User
from ..permissions import Action
from . import service, sessions, throttle
from .decorators import requires
from .forms import (
    ClearThrottleForm,
    EditUserForm,
    EmptyForm,
    ResetPasswordForm,
    ServiceAccountForm,
    TokenForm,
    UserForm,
)
from .routes import _show_on_form, _sign_out, bp


@bp.route("/admin/users")
@requires(Action.MANAGE_USERS)
def users() -> ResponseReturnValue:
    rows = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("auth/users.html", users=rows)


@bp.route("/admin/users/new", methods=["GET", "POST"])
@requires(Action.MANAGE_USERS)
def new_user() -> ResponseReturnValue:
    form = UserForm()
    if form.validate_on_submit():
        try:
            # The administrator chose the password: the person must choose
            # their own at the first sign-in.
            user = service.create_user(form.username.data, form.password.data,
                                       [Role(r) for r in form.roles.data],
                                       form.full_name.data or "", form.email.data or "", active=form.active.data,
                                       must_change_password=True)
        except service.UserError as exc:
            _show_on_form(form, exc, "username")
        else:
            db.session.commit()
            flash(_("User %(name)s created; they choose their own password when they first sign in.",
                    name=user.username), "success")
            return redirect(url_for("auth.users"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/user_form.html", form=form, user=None), status


@bp.route("/admin/users/<int:user_id>", methods=["GET", "POST"])
@requires(Action.MANAGE_USERS)
def edit_user(user_id: int) -> ResponseReturnValue:
    user = db.get_or_404(User, user_id)
    if service.is_service_account(user):
        return _edit_service_account(user)
    form = _edit_form(user) if request.method == "GET" else EditUserForm()
    reset = ResetPasswordForm(prefix="reset")
    if form.validate_on_submit():
        try:
            service.update_user(user, full_name=form.full_name.data or "", email=form.email.data or "",
                                roles=[Role(r) for r in form.roles.data], active=form.active.data,
                                acting=current_user)
        except service.UserError as exc:
            flash(exc.message, "error")
        else:
            db.session.commit()
            flash(_("User %(name)s saved.", name=user.username), "success")
            return redirect(url_for("auth.users"))
    status = 400 if request.method == "POST" else 200
    return _user_page(user, form, reset), status


def _edit_form(user: User) -> EditUserForm:
    """The edit form filled from the account alone: never from the posted
    data of another form (a missing checkbox reads as unticked)."""
    form = EditUserForm(formdata=None, obj=user)
    form.roles.data = sorted(r.value for r in user.roles)
    form.active.data = user.active
    return form


def _user_page(user: User, form: EditUserForm, reset: ResetPasswordForm) -> str:
    return render_template("auth/user_form.html", form=form, user=user, reset=reset, end_form=EmptyForm(),
                           session_count=sessions.count_active(user), token_count=len(user.tokens))


def _edit_service_account(user: User) -> ResponseReturnValue:
    """A service account's page: enabled or not, and its tokens; nothing
    that would make it a person's account (roles, a password)."""
    form = ServiceAccountForm(formdata=None, obj=user) if request.method == "GET" else ServiceAccountForm()
    if form.validate_on_submit():
        service.set_service_account_active(user, form.active.data)
        db.session.commit()
        flash(_("Service account %(name)s saved.", name=user.username), "success")
        return redirect(url_for("auth.users"))
    status = 400 if request.method == "POST" else 200
    return _service_account_page(user, form), status


def _service_account_page(user: User, form: ServiceAccountForm) -> str:
    return render_template("auth/service_account.html", user=user, form=form, tokens=user.tokens,
                           token_form=TokenForm(prefix="token"), delete_form=EmptyForm())


@bp.route("/admin/users/<int:user_id>/tokens", methods=["POST"])
@requires(Action.MANAGE_USERS)
def create_service_token(user_id: int) -> ResponseReturnValue:
    """A new token for a service account (to give Orthanc a new one); a
    person makes their own tokens on their account page."""
    user = db.get_or_404(User, user_id)
    form = TokenForm(prefix="token")
    if not form.validate_on_submit():
        flash(_("The token could not be created: %(reasons)s",
                reasons="; ".join(str(e) for errs in form.errors.values() for e in errs)), "error")
        return redirect(url_for("auth.edit_user", user_id=user.id))
    token = service.create_service_token(user, form.name.data or "")
    db.session.commit()
    return render_template("auth/token_created.html", token=token,
                           back=url_for("auth.edit_user", user_id=user.id), owner=user.username)


@bp.route("/admin/users/<int:user_id>/tokens/<int:token_id>/delete", methods=["POST"])
@requires(Action.MANAGE_USERS)
def delete_service_token(user_id: int, token_id: int) -> ResponseReturnValue:
    user = db.get_or_404(User, user_id)
    if not service.is_service_account(user) or not service.revoke_token(user, token_id):
        abort(404)
    db.session.commit()
    flash(_("Token revoked."), "success")
    return redirect(url_for("auth.edit_user", user_id=user.id))


@bp.route("/admin/users/<int:user_id>/password", methods=["POST"])
@requires(Action.MANAGE_USERS)
def reset_password(user_id: int) -> ResponseReturnValue:
    user = db.get_or_404(User, user_id)
    reset = ResetPasswordForm(prefix="reset")
    if reset.validate_on_submit():
        try:
            service.reset_password(user, reset.new_password.data, acting=current_user)
        except service.UserError as exc:
            flash(exc.message, "error")
            return redirect(url_for("auth.edit_user", user_id=user.id))
        db.session.commit()
        if user.id == current_user.id:
            flash(_("Password of %(name)s reset; their other sessions are signed out and their API tokens "
                    "revoked.", name=user.username), "success")
        else:
            flash(_("Password of %(name)s reset; their other sessions are signed out and their API tokens "
                    "revoked. They choose their own password when they next sign in.", name=user.username),
                  "success")
        return redirect(url_for("auth.edit_user", user_id=user.id))
    return _user_page(user, _edit_form(user), reset), 400


@bp.route("/admin/users/<int:user_id>/sessions/end", methods=["POST"])
@requires(Action.MANAGE_USERS)
def end_user_sessions(user_id: int) -> ResponseReturnValue:
    user = db.get_or_404(User, user_id)
    ended = sessions.end_all(user)
    db.session.commit()
    if user.id == current_user.id:
        _sign_out()
        flash(_("You are signed out everywhere."), "info")
        return redirect(url_for("auth.login"))
    flash(ngettext("%(name)s is signed out everywhere (%(num)d session ended).",
                   "%(name)s is signed out everywhere (%(num)d sessions ended).", ended, name=user.username),
          "success")
    return redirect(url_for("auth.edit_user", user_id=user.id))


@bp.route("/admin/sign-in-throttles")
@requires(Action.MANAGE_USERS)
def throttles() -> ResponseReturnValue:
    return render_template("auth/throttles.html", rows=throttle.current(), seconds_left=throttle.seconds_left,
                           address_limit=current_app.config["LOGIN_MAX_FAILURES"] * throttle.ADDRESS_FACTOR,
                           clear_form=ClearThrottleForm(), all_form=EmptyForm())


@bp.route("/admin/sign-in-throttles/clear", methods=["POST"])
@requires(Action.MANAGE_USERS)
def clear_throttle() -> ResponseReturnValue:
    form = ClearThrottleForm()
    if not form.validate_on_submit():
        abort(400)
    if not throttle.clear(form.key.data):
        flash(_("That throttle had already ended."), "info")
    else:
        flash(_("Throttle cleared."), "success")
    return redirect(url_for("auth.throttles"))


@bp.route("/admin/sign-in-throttles/clear-all", methods=["POST"])
@requires(Action.MANAGE_USERS)
def clear_all_throttles() -> ResponseReturnValue:
    cleared = throttle.clear_all()
    flash(ngettext("%(num)d throttle cleared.", "%(num)d throttles cleared.", cleared), "success")
    return redirect(url_for("auth.throttles"))
