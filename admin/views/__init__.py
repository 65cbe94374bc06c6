"""The panel under /admin: one module per area; this module is the routing table and the guards."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, abort, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user, logout_user
from flask_wtf.csrf import CSRFProtect

from admin.api import bp as api_bp
from admin.forms import ROLE_LABELS
from admin.params import download_name
from admin.pickers import paste_box
from bot.extensions import db
from bot.models import User
from bot.services.errors import ServiceError, WeComRefused
from bot.services.users.accounts import session_user
from bot.services.users.permissions import Action, NotPermitted, allows

bp = Blueprint("admin", __name__, url_prefix="/admin")
login_manager = LoginManager()
csrf = CSRFProtect()

#: the only panel endpoints a signed-out visitor may reach
PUBLIC_ENDPOINTS = {"admin.login"}


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The session's user, unless that session was ended since (sign-out elsewhere, a new password)."""
    return session_user(session_id)


@bp.before_request
def require_sign_in() -> ResponseReturnValue | None:
    """Every panel route needs a signed-in, active user; checked here so that no view can forget it."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated or not current_user.is_active:
        # A disabled account's session ends at its next request.
        logout_user()
        return redirect(url_for("admin.login", next=request.full_path if request.method == "GET" else None))
    return None


@bp.before_request
def refuse_nul_characters() -> ResponseReturnValue | None:
    """A NUL character in any submitted field is refused up front: no text Siyu keeps may hold one
    (PostgreSQL refuses them), and no honest form sends one."""
    values = [*request.args.values(), *request.form.values()]
    if any("\x00" in v for v in values):
        abort(400)
    return None


def permission_required(action: Action) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The view needs ``action`` (the one policy, ``bot.services.users.permissions``): 403 otherwise."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not allows(current_user, action):
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return decorate


def client_ip() -> str:
    return request.remote_addr or ""


def image_response(render: Callable[[], bytes], filename: str) -> ResponseReturnValue:
    """A code's image (QR or poster) rendered by ``render``; ?download=1 makes it an attachment. The code
    fetched from WeCom the first time is kept (committed); a failure is a short text answer."""
    try:
        png = render()
    except ServiceError as exc:  # no code, an unreadable image, no font (409); WeCom refused (502)
        db.session.rollback()
        return Response(refusal_message(exc), status=exc.status, mimetype="text/plain")
    db.session.commit()
    response = send_file(
        io.BytesIO(png),
        mimetype="image/png",
        as_attachment=bool(request.args.get("download")),
        download_name=download_name(filename),
    )
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


def init_panel(app: Flask) -> None:
    settings = app.config["SIYU"]
    # Flask ships defaults for these keys, so they are set, not setdefault'ed.
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
    )
    app.context_processor(lambda: {"role_labels": ROLE_LABELS})
    app.jinja_env.globals["paste_box"] = paste_box  # global: the picker macro is imported without context
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.login_message = _l("请先登录")
    csrf.init_app(app)

    # The API authenticates every request with a bearer token. (WeCom's signed callbacks never reach Flask's
    # CSRF check: the webhook's POST is answered in front of the app, handlers.webhook._FastPath.)
    csrf.exempt(api_bp)
    app.register_blueprint(bp)


@bp.errorhandler(403)
def forbidden(_error: Exception) -> ResponseReturnValue:
    return render_template("admin/error.html", code=403, message=_("没有权限访问此页面或此客户。")), 403


@bp.errorhandler(ServiceError)
def refused(exc: ServiceError) -> ResponseReturnValue:
    """A refusal no view turned into a form message: the error page with its words (a refused permission
    is the 403 page)."""
    db.session.rollback()
    if isinstance(exc, NotPermitted):
        return forbidden(exc)
    return render_template("admin/error.html", code=exc.status, message=refusal_message(exc)), exc.status


def refusal_message(exc: ServiceError) -> str:
    """A refusal in the panel's words: WeCom's with its code, Siyu's own through the translations."""
    if isinstance(exc, WeComRefused):
        return _("企业微信拒绝了请求：%(code)s %(message)s", code=exc.errcode, message=exc.errmsg)
    return _(exc.message, **exc.params)


@bp.errorhandler(404)
def not_found(_error: Exception) -> ResponseReturnValue:
    return render_template("admin/error.html", code=404, message=_("页面或客户不存在。")), 404


# The areas register their views on ``bp``, so they are imported once it exists.
from admin.views import (  # noqa: E402, F401 - register the routes
    api_tokens,
    audit,
    auth,
    brand,
    channels,
    customer_bulk,
    customer_fields,
    customers,
    dashboard,
    group_codes,
    groups,
    handovers,
    library,
    lifecycle,
    moments,
    picks,
    radar,
    rankings,
    replies,
    segments,
    sends,
    settings_page,
    staff,
    tags,
    targets,
    users,
    webhooks,
)
