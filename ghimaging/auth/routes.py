"""The sign-in and account pages, the page to choose one's own password
(:mod:`.gate` sends people there), and the user loader that every
signed-in request passes through (user administration: :mod:`.admin_routes`,
on the same blueprint). Each view calls the service
(:mod:`.service`, :mod:`.sessions`; :mod:`.throttle` keeps its own
transaction) and commits once when it succeeded; the error handlers roll
back what failed."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_login.utils import decode_cookie
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf

from ..extensions import db, login_manager
from ..models import User
from ..permissions import Action
from . import gate, service, sessions, throttle
from .decorators import requires
from .forms import (
    ChangePasswordForm,
    CredentialsForm,
    EmptyForm,
    LanguageForm,
    LoginForm,
    TokenForm,
)

bp = Blueprint("auth", __name__)

LOGIN_FAILED = _l("Unknown username or wrong password.")


@login_manager.user_loader  # type: ignore[untyped-decorator]  # Flask-Login ships no types
def load_user(user_id: str) -> User | None:
    """Cookies carry ``<user id>:<session secret>``; the session must still
    exist server-side (see :mod:`.sessions`). The once-a-minute touch of the
    session row is committed here, before the view runs."""
    user = sessions.load(user_id)
    if user is None:
        session.pop("_user_id", None)
        # A remember-me cookie naming the same dead session is dropped, so
        # the browser stops sending it.
        cookie = request.cookies.get(current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token"))
        if cookie is not None and decode_cookie(cookie) in (None, user_id):
            session["_remember"] = "clear"
    elif db.session.is_modified(user.current_session):
        db.session.commit()
    return user


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an absolute or scheme-relative ``next`` would let
    a crafted link send a user elsewhere after signing in."""
    from ..ui import local_path

    return local_path(target, url_for("imaging.dashboard"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        wait = throttle.wait_seconds(form.username.data, request.remote_addr)
        if wait:
            flash(_("Too many failed sign-ins. Try again in %(seconds)s seconds.", seconds=wait), "error")
            status = 429
        else:
            user = service.authenticate(form.username.data, form.password.data, request.remote_addr)
            if user:
                gate.check_printed_password(user, form.password.data)
                _sign_in(user, remember=form.remember.data)
                db.session.commit()
                return redirect(_safe_next(request.args.get("next")))
            flash(LOGIN_FAILED, "error")
            status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


def _forget_browser_session() -> None:
    """Empty the signed session cookie, the CSRF token in it included: a
    form token fetched before signing in or out is refused afterwards."""
    session.clear()
    g.pop("csrf_token", None)  # Flask-WTF's copy for this request


def _sign_in(user: User, *, remember: bool) -> None:
    """A fresh server-side session, and cookies naming it (a new remember-me
    value at every sign-in). The new session's form token is made here, not
    by the first page: tabs a browser restores at once after signing in
    would each make their own, and the forms of all but one were refused."""
    _forget_browser_session()
    session.permanent = True  # PERMANENT_SESSION_LIFETIME applies
    sessions.create(user, remember=remember)
    login_user(user, remember=remember)
    generate_csrf()
    if not remember and current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies:
        session["_remember"] = "clear"  # an older remember-me cookie of this browser goes


def _sign_out() -> None:
    _forget_browser_session()
    logout_user()  # also drops the remember-me cookie


@bp.route("/logout", methods=["POST"])
@requires(Action.OWN_ACCOUNT)
def logout() -> ResponseReturnValue:
    here = current_user.current_session
    if here is not None:
        sessions.end(current_user, here.id)
        db.session.commit()
    _sign_out()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account", methods=["GET", "POST"])
@requires(Action.OWN_ACCOUNT)
def account() -> ResponseReturnValue:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            service.change_own_password(current_user, form.current_password.data, form.new_password.data,
                                        revoke_tokens=form.revoke_tokens.data)
        except service.UserError as exc:
            _show_on_form(form, exc, "current_password")
        else:
            db.session.commit()
            if form.revoke_tokens.data:
                flash(_("Your password is changed; your other sessions are signed out and your API tokens "
                        "revoked."), "success")
            else:
                flash(_("Your password is changed; your other sessions are signed out."), "success")
            return redirect(url_for("auth.account"))
    status = 400 if request.method == "POST" and form.errors else 200
    return _account_page(form), status


@bp.route("/account/credentials", methods=["POST"])
@requires(Action.OWN_ACCOUNT)
def save_credentials() -> ResponseReturnValue:
    """One's own credentials line (the printed report's signature block);
    each person edits only their own."""
    form = CredentialsForm()
    if not form.validate_on_submit():
        return _account_page(ChangePasswordForm(formdata=None), credentials_form=form), 400
    current_user.credentials = " ".join((form.credentials.data or "").split())
    db.session.commit()
    flash(_("Your credentials line is saved; printed reports you sign show it."), "success")
    return redirect(url_for("auth.account"))


@bp.route("/account/language", methods=["POST"])
@requires(Action.OWN_ACCOUNT)
def save_language() -> ResponseReturnValue:
    """One's own language for the pages (issue 13): stored on the account,
    read by :func:`ghimaging.i18n.select_locale`; "Automatic" (stored as
    None) follows the browser's ``Accept-Language``."""
    form = LanguageForm()
    if not form.validate_on_submit():
        return _account_page(ChangePasswordForm(formdata=None), language_form=form), 400
    current_user.language = form.language.data or None
    db.session.commit()
    # Said in the language just chosen: should anything have settled this
    # request's language before the change, it is chosen again.
    from flask_babel import refresh

    refresh()
    flash(_("Your language is saved."), "success")
    return redirect(url_for("auth.account"))


@bp.route("/account/password", methods=["GET", "POST"])
@requires(Action.OWN_ACCOUNT)
def choose_password() -> ResponseReturnValue:
    """Where :mod:`.gate` sends a person whose password someone else chose;
    the only page (with signing out) they reach until they chose their own.
    Anyone else changes their password on the account page."""
    if not current_user.must_change_password:
        return redirect(url_for("auth.account"))
    form = ChangePasswordForm()
    form.current_password.label.text = _("Password you were given")
    if form.validate_on_submit():
        try:
            service.change_own_password(current_user, form.current_password.data, form.new_password.data)
        except service.UserError as exc:
            _show_on_form(form, exc, "current_password")
        else:
            db.session.commit()
            flash(_("Your password is changed: from now on only you know it."), "success")
            return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" and form.errors else 200
    return render_template("auth/choose_password.html", form=form, message=str(gate.MESSAGE)), status


def _show_on_form(form: FlaskForm, exc: service.UserError, default: str) -> None:
    """The error under the field it names (``default`` when it names none)."""
    fields = exc.fields if isinstance(exc, service.UserInvalid) and exc.fields else {default: exc.message}
    for name, message in fields.items():
        field = getattr(form, name, None) or getattr(form, default)
        field.errors.append(message)


def _account_page(form: ChangePasswordForm, *, credentials_form: CredentialsForm | None = None,
                  language_form: LanguageForm | None = None) -> str:
    """The account page; each form not given is filled from the account as
    stored (never from the posted data of another form: a failed save of
    one form leaves the others showing what is saved, issue 13)."""
    if credentials_form is None:
        credentials_form = CredentialsForm(formdata=None, credentials=current_user.credentials)
    if language_form is None:
        language_form = LanguageForm(formdata=None, language=current_user.language or "")
    return render_template("auth/account.html", form=form, token_form=TokenForm(prefix="token"),
                           credentials_form=credentials_form, language_form=language_form,
                           tokens=current_user.tokens, delete_form=EmptyForm(),
                           sessions=sessions.active(current_user), here=current_user.current_session)


@bp.route("/account/sessions/<int:session_id>/end", methods=["POST"])
@requires(Action.OWN_ACCOUNT)
def end_session(session_id: int) -> ResponseReturnValue:
    here = current_user.current_session
    if not sessions.end(current_user, session_id):
        abort(404)
    db.session.commit()
    if here is not None and here.id == session_id:
        _sign_out()
        flash(_("You are signed out."), "info")
        return redirect(url_for("auth.login"))
    flash(_("That session is signed out."), "success")
    return redirect(url_for("auth.account"))


@bp.route("/account/sessions/end-all", methods=["POST"])
@requires(Action.OWN_ACCOUNT)
def end_all_sessions() -> ResponseReturnValue:
    """Sign out everywhere: every browser, this one included (API tokens
    are revoked one by one on the same page)."""
    sessions.end_all(current_user)
    db.session.commit()
    _sign_out()
    flash(_("You are signed out everywhere."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/tokens", methods=["POST"])
@requires(Action.OWN_ACCOUNT)
def create_token() -> ResponseReturnValue:
    form = TokenForm(prefix="token")
    if not form.validate_on_submit():
        flash(_("The token could not be created: %(reasons)s",
                reasons="; ".join(str(e) for errs in form.errors.values() for e in errs)), "error")
        return redirect(url_for("auth.account"))
    token = service.create_token(current_user, form.name.data or "")
    db.session.commit()
    return render_template("auth/token_created.html", token=token)


@bp.route("/account/tokens/<int:token_id>/delete", methods=["POST"])
@requires(Action.OWN_ACCOUNT)
def delete_token(token_id: int) -> ResponseReturnValue:
    if not service.revoke_token(current_user, token_id):
        abort(404)
    db.session.commit()
    flash(_("Token revoked."), "success")
    return redirect(url_for("auth.account"))
