"""API 令牌: bearer tokens for /api/v1 — everyone their own, admins everyone's; created (shown once), revoked."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from admin.forms import ApiTokenForm, EmptyForm
from admin.views import bp, client_ip, permission_required, refusal_message
from bot.extensions import db
from bot.models._time import utcnow
from bot.services.errors import Invalid
from bot.services.users.accounts import audit
from bot.services.users.api_tokens import create_api_token, revoke_api_token, token_for, tokens_for
from bot.services.users.permissions import Action, allows


def _page(form: ApiTokenForm, new_token: str | None = None) -> str:
    return render_template(
        "admin/api_tokens/list.html",
        tokens=tokens_for(current_user),
        form=form,
        revoke_form=EmptyForm(),
        new_token=new_token,
        now=utcnow(),
        everyone=allows(current_user, Action.manage_any_api_token),
    )


@bp.get("/api-tokens")
@permission_required(Action.manage_own_api_tokens)
def api_tokens() -> ResponseReturnValue:
    return _page(ApiTokenForm())


@bp.post("/api-tokens")
@permission_required(Action.manage_own_api_tokens)
def create_api_token_view() -> ResponseReturnValue:
    form = ApiTokenForm()
    if not form.validate_on_submit():
        return _page(form), 400
    try:
        token = create_api_token(
            form.name.data or "", current_user, expires_days=form.expires_days.data, actor=current_user
        )
    except Invalid as exc:
        getattr(form, exc.field or "name", form.name).errors = [refusal_message(exc)]
        return _page(form), 400
    audit(
        current_user,
        "create_api_token",
        f"token:{(form.name.data or '').strip()}",
        after={"user": current_user.username, "expires_days": form.expires_days.data},
        ip=client_ip(),
    )
    db.session.commit()
    # Only its hash is kept: this answer is the one time the token is shown (never cached, never redirected).
    response = _page(ApiTokenForm(formdata=None), new_token=token)
    return response, 200, {"Cache-Control": "no-store"}


@bp.post("/api-tokens/<int:token_id>/revoke")
@permission_required(Action.manage_own_api_tokens)
def revoke_api_token_view(token_id: int) -> ResponseReturnValue:
    form = EmptyForm()
    if not form.validate_on_submit():
        return redirect(url_for("admin.api_tokens"))
    row = token_for(current_user, token_id)  # 404 for none, 403 for another's (unless an admin)
    if revoke_api_token(row):
        owner = row.user.username if row.user else ""
        audit(current_user, "revoke_api_token", f"token:{row.id}:{row.name}", after={"user": owner}, ip=client_ip())
        flash(_("已撤销令牌 %(name)s", name=row.name))
    db.session.commit()
    return redirect(url_for("admin.api_tokens"))
