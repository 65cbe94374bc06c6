"""设置: the connected corp, the callback URL for the WeCom console, and the sandbox controls."""

from __future__ import annotations

import requests
from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from admin.forms import SANDBOX_ACTIONS, SandboxBurstForm
from admin.views import bp, client_ip, permission_required
from bot.extensions import db
from bot.services.clients import settings
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows


@bp.get("/settings")
def settings_view() -> ResponseReturnValue:
    return _page(SandboxBurstForm())


def _page(form: SandboxBurstForm) -> str:
    s = settings()
    return render_template(
        "admin/settings/index.html",
        s=s,
        callback_url=request.host_url.rstrip("/") + "/wecom/callback",
        form=form,
        can_drive=s.sandbox and allows(current_user, Action.drive_sandbox),
    )


@bp.post("/settings/sandbox/burst")
@permission_required(Action.drive_sandbox)
def sandbox_burst() -> ResponseReturnValue:
    s = settings()
    form = SandboxBurstForm()
    if not s.sandbox:
        flash(_("已连接真实企业，沙箱控制不可用"))
        return redirect(url_for("admin.settings_view"))
    if not form.validate_on_submit():
        return _page(form), 400
    base = (s.wecom_api_base or "").removesuffix("cgi-bin/")
    try:
        payload = {"count": form.count.data, "state": form.state.data or "", "action": form.action.data}
        result = requests.post(base + "sandbox/simulate", json=payload, timeout=120).json()
    except (requests.RequestException, ValueError) as exc:
        flash(_("沙箱未响应：%(error)s", error=type(exc).__name__))
        return redirect(url_for("admin.settings_view"))
    audit(
        current_user,
        "sandbox_burst",
        form.state.data or "",
        after={"action": form.action.data, "count": result.get("count", 0)},
        ip=client_ip(),
    )
    db.session.commit()
    flash(
        _(
            "模拟了 %(count)s 次「%(action)s」，Siyu 确认收到 %(acked)s 条回调",
            count=result.get("count", 0),
            action=SANDBOX_ACTIONS[form.action.data or "add"],
            acked=result.get("acknowledged", 0),
        )
    )
    return redirect(url_for("admin.settings_view"))
