"""Sign up, sign in, sign out, change and reset the password."""
from __future__ import annotations

import hashlib

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user

from saas.core import accounts as auth
from saas.core.db import web_session
from saas.core.outbox import queue_email
from saas.web.extensions import app_settings, app_today, login_manager
from saas.web.limits import LimitReached, give_back, take
from saas.web.login import signed_in_account
from saas.web.views.forms import ChangePasswordForm, ForgotPasswordForm, LoginForm, ResetPasswordForm, SignupForm

bp = Blueprint("auth", __name__)
# Failed sign-ins only (a correct one is given back); past either limit the form answers 429.
LOGIN_LIMIT_PER_IP = "10 per minute"
LOGIN_LIMIT_PER_ACCOUNT = "5 per minute"
# Reset emails and sign-ups send mail to an address the caller chooses.
RESET_LIMIT_PER_ACCOUNT = "3 per hour"
RESET_LIMIT_PER_IP = "10 per hour"
SIGNUP_LIMIT_PER_IP = "5 per hour"


def _account_key(email: str) -> str:
    """The account being tried, normalised as find_user does, hashed to keep Redis keys short."""
    return "account:" + hashlib.sha256(email.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]


def _ip_key() -> str:
    return f"ip:{get_remote_address()}"


def is_local_path(target: str | None) -> bool:
    """A path on this site as a browser reads it: one leading slash, no backslash, no control character."""
    return bool(target and target.startswith("/") and not target.startswith("//") and "\\" not in target
                and not any(ord(ch) < 32 or ord(ch) == 127 for ch in target))


# Where a sign-in lands without a `next`: staff start on the page of their work, not on a subscriber's dashboard.
HOME_BY_ROLE = {"admin": "admin.index", "finance": "finance.overview"}


def home_for(user) -> str:
    return url_for(HOME_BY_ROLE.get(user.role, "dashboard.index"))


def _safe_next(target: str | None, user=None) -> str:
    """Only same-site relative paths; anything else goes to the user's home (home_for).

    Browsers read a backslash as a slash and drop tabs and line breaks (so a backslash or a tab
    after the first slash leaves the site): neither is allowed anywhere in the path.
    """
    if is_local_path(target):
        return target
    return home_for(user) if user is not None else url_for("dashboard.index")


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    form = SignupForm()
    if form.validate_on_submit():
        take(SIGNUP_LIMIT_PER_IP, "signup:" + _ip_key(), "Too many sign-ups from your network: try again later.")
        try:
            user = auth.create_user(web_session, form.email.data, form.password.data, form.name.data or "")
        except auth.SignupError as exc:
            web_session.rollback()
            form.email.errors.append(str(exc))
        else:
            queue_email(web_session, key=f"welcome:{user.id}", kind="welcome", to=user.email,
                        # No caller text in mail to an address nobody has confirmed yet (a spam vector).
                        template="welcome", context={}, user_id=user.id)
            web_session.commit()
            login_user(user)
            flash("Welcome! Your account is ready.", "success")
            return redirect(url_for("dashboard.index"))
    status = 400 if form.errors else 200
    return render_template("auth/signup.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        ip, account = ("login:" + _ip_key()), ("login:" + _account_key(form.email.data))
        take(LOGIN_LIMIT_PER_IP, ip, "Too many failed sign-ins from your network: wait a minute and try again.")
        try:
            take(LOGIN_LIMIT_PER_ACCOUNT, account, "Too many failed sign-ins for this account: wait a minute "
                 "and try again, or reset your password.")
        except LimitReached:
            give_back(LOGIN_LIMIT_PER_IP, ip)
            raise
        user = auth.find_user(web_session, form.email.data)
        if auth.verify_password(user, form.password.data) and user.is_active:
            give_back(LOGIN_LIMIT_PER_IP, ip)
            give_back(LOGIN_LIMIT_PER_ACCOUNT, account)
            auth.record_sign_in(web_session, user)
            web_session.commit()
            session.clear()  # a new session, with a new CSRF secret, for the signed-in user
            login_user(user)
            return redirect(_safe_next(request.args.get("next"), user))
        form.password.errors.append("Wrong email or password.")
    status = 400 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    """Ends the session on the server too: the account's session token rotates, so a copy of the
    cookie opens nothing (signing out ends the account's other sessions as well)."""
    account = signed_in_account() if current_user.is_authenticated else None
    if account is not None:  # None: its sessions ended meanwhile, nothing left to end
        auth.end_sessions(account)
        web_session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = signed_in_account()
        if user is None:  # signed out elsewhere since this request began: as if it had not been signed in
            return login_manager.unauthorized()
        if not auth.verify_password(user, form.current_password.data):
            form.current_password.errors.append("That is not your current password.")
        else:
            auth.set_password_and_tell(web_session, user, form.password.data, app_today())
            web_session.commit()
            login_user(user)  # the session token rotated; keep this session signed in
            flash("Your password is changed. Other sessions were signed out.", "success")
            return redirect(url_for("dashboard.index"))
    status = 400 if form.errors else 200
    return render_template("auth/change_password.html", form=form), status


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        take(RESET_LIMIT_PER_IP, "reset:" + _ip_key(), "Too many reset requests from your network: try again later.")
        take(RESET_LIMIT_PER_ACCOUNT, "reset:" + _account_key(form.email.data),
             "Too many reset emails for this address: use the last one we sent, or try again later.")
        user = auth.find_user(web_session, form.email.data)
        if user is not None and user.is_active:
            token = auth.make_reset_token(user, current_app.config["SECRET_KEY"])
            queue_email(web_session, key=f"password-reset:{user.id}:{token[-24:]}", kind="password-reset",
                        to=user.email, template="password_reset", user_id=user.id,
                        context={"reset_url": app_settings().app_url + url_for("auth.reset_password", token=token),
                                 "minutes": auth.RESET_MAX_AGE // 60})
            web_session.commit()
        # The same answer either way: this page never tells whether an account exists.
        flash("If an account exists for that address, we have emailed a link to reset the password.", "info")
        return redirect(url_for("auth.login"))
    status = 400 if form.errors else 200
    return render_template("auth/forgot_password.html", form=form), status


def _link_not_usable():
    flash("That reset link is invalid, expired or already used. Ask for a new one.", "error")
    return redirect(url_for("auth.forgot_password"))


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    user = auth.user_for_reset_token(web_session, token, current_app.config["SECRET_KEY"])
    if user is None:
        return _link_not_usable()
    form = ResetPasswordForm()
    if form.validate_on_submit():
        user = auth.user_for_reset_token(web_session, token, current_app.config["SECRET_KEY"], claim=True)
        if user is None:  # a simultaneous use of the same link won
            web_session.rollback()
            return _link_not_usable()
        auth.set_password_and_tell(web_session, user, form.password.data, app_today())
        auth.record_sign_in(web_session, user)
        web_session.commit()
        login_user(user)
        flash("Your new password is set.", "success")
        return redirect(url_for("dashboard.index"))
    status = 400 if form.errors else 200
    return render_template("auth/reset_password.html", form=form, token=token), status
