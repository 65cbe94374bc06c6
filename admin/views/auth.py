"""Sign-in and sign-out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from admin.forms import EmptyForm, SignInForm
from admin.views import bp, client_ip, refusal_message
from bot.extensions import db
from bot.services.clients import settings
from bot.services.users.accounts import SignInError, audit, authenticate, end_sessions


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never redirect a signed-in user to another host.
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    form = SignInForm()
    error = None
    if form.validate_on_submit():
        try:
            user = authenticate(form.username.data or "", form.password.data or "", client_ip())
        except SignInError as exc:
            db.session.commit()
            error = refusal_message(exc)
        else:
            login_user(user)
            audit(user, "sign_in", ip=client_ip())
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")))
    status = 401 if error else 200
    return render_template("admin/auth/login.html", form=form, error=error, sandbox=settings().sandbox), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    form = EmptyForm()
    if form.validate_on_submit():
        # Signing out ends this user's sessions everywhere, and any copy of this one's cookie.
        end_sessions(current_user)
        audit(current_user, "sign_out", ip=client_ip())
        db.session.commit()
        logout_user()
        flash(_("已退出登录"))
    return redirect(url_for("admin.login"))
