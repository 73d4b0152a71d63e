from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from ..extensions import db
from ..models import Role, User
from . import service
from .decorators import admin_required
from .forms import ChangePasswordForm, EditUserForm, EmptyForm, LoginForm, ResetPasswordForm, TokenForm, UserForm

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "Unknown username or wrong password."


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an absolute or scheme-relative ``next`` would let
    a crafted link send a user elsewhere after signing in."""
    if not target:
        return url_for("imaging.dashboard")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("imaging.dashboard")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        wait = service.seconds_locked(form.username.data, request.remote_addr)
        if wait:
            flash(f"Too many failed sign-ins. Try again in {wait} seconds.", "error")
            status = 429
        else:
            user = service.authenticate(form.username.data, form.password.data, request.remote_addr)
            if user:
                from flask import session

                session.permanent = True  # PERMANENT_SESSION_LIFETIME applies
                login_user(user, remember=form.remember.data)
                return redirect(_safe_next(request.args.get("next")))
            flash(LOGIN_FAILED, "error")
            status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    form = ChangePasswordForm()
    token_form = TokenForm(prefix="token")
    if form.validate_on_submit():
        if not current_user.check_password(form.current_password.data):
            form.current_password.errors.append("This is not your current password.")
        else:
            service.set_password(current_user, form.new_password.data)
            login_user(current_user._get_current_object())  # keep this session; others end
            flash("Your password is changed.", "success")
            return redirect(url_for("auth.account"))
    status = 400 if request.method == "POST" and form.errors else 200
    return render_template("auth/account.html", form=form, token_form=token_form,
                           tokens=current_user.tokens, delete_form=EmptyForm()), status


@bp.route("/account/tokens", methods=["POST"])
@login_required
def create_token():
    form = TokenForm(prefix="token")
    if not form.validate_on_submit():
        flash("The token could not be created: " + "; ".join(e for errs in form.errors.values() for e in errs), "error")
        return redirect(url_for("auth.account"))
    token = service.create_token(current_user, form.name.data or "")
    return render_template("auth/token_created.html", token=token)


@bp.route("/account/tokens/<int:token_id>/delete", methods=["POST"])
@login_required
def delete_token(token_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400)
    if not service.revoke_token(current_user, token_id):
        abort(404)
    flash("Token revoked.", "success")
    return redirect(url_for("auth.account"))


# -- administration ---------------------------------------------------------

@bp.route("/admin/users")
@admin_required
def users():
    rows = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("auth/users.html", users=rows)


@bp.route("/admin/users/new", methods=["GET", "POST"])
@admin_required
def new_user():
    form = UserForm()
    if form.validate_on_submit():
        try:
            user = service.create_user(form.username.data, form.password.data,
                                       [Role(r) for r in form.roles.data],
                                       form.full_name.data or "", form.email.data or "", active=form.active.data)
        except service.UserError as exc:
            form.username.errors.append(str(exc))
        else:
            flash(f"User {user.username} created.", "success")
            return redirect(url_for("auth.users"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/user_form.html", form=form, user=None), status


@bp.route("/admin/users/<int:user_id>", methods=["GET", "POST"])
@admin_required
def edit_user(user_id: int):
    user = db.get_or_404(User, user_id)
    form = EditUserForm(obj=user) if request.method == "GET" else EditUserForm()
    if request.method == "GET":
        form.roles.data = sorted(r.value for r in user.roles)
        form.active.data = user.active
    reset = ResetPasswordForm(prefix="reset")
    if form.validate_on_submit():
        try:
            service.update_user(user, full_name=form.full_name.data or "", email=form.email.data or "",
                                roles=[Role(r) for r in form.roles.data], active=form.active.data,
                                acting=current_user)
        except service.UserError as exc:
            flash(str(exc), "error")
        else:
            flash(f"User {user.username} saved.", "success")
            return redirect(url_for("auth.users"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/user_form.html", form=form, user=user, reset=reset), status


@bp.route("/admin/users/<int:user_id>/password", methods=["POST"])
@admin_required
def reset_password(user_id: int):
    user = db.get_or_404(User, user_id)
    reset = ResetPasswordForm(prefix="reset")
    if reset.validate_on_submit():
        service.set_password(user, reset.new_password.data)
        if user.id == current_user.id:
            login_user(user)
        flash(f"Password of {user.username} reset; their other sessions are signed out.", "success")
        return redirect(url_for("auth.edit_user", user_id=user.id))
    form = EditUserForm(obj=user)
    form.roles.data = sorted(r.value for r in user.roles)
    return render_template("auth/user_form.html", form=form, user=user, reset=reset), 400
