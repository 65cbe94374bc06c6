"""Webhook: the brand's endpoints (admins only) — register, edit, rotate the secret (shown once), send a
test event, read the delivery log, replay one delivery or every failed one of a period, delete."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from admin.forms import EmptyForm, WebhookEndpointForm, WebhookReplayForm
from admin.views import bp, client_ip, permission_required, refusal_message
from bot.extensions import db
from bot.models import DeliveryStatus, WebhookEndpoint
from bot.services import corp_time
from bot.services.errors import Invalid
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action, allows
from bot.services.webhooks import endpoints
from bot.services.webhooks.events import SUBSCRIBABLE

#: the event types as the panel names them
EVENT_LABELS = {
    "customer.added": _l("客户添加"),
    "customer.lost": _l("客户流失（删除）"),
    "customer.transferred": _l("客户转接（交接）"),
    "customer.tags_changed": _l("客户标签变化"),
    "customer.profile_changed": _l("客户资料变化"),
    "group.member_joined": _l("入群"),
    "group.member_left": _l("退群"),
    "send.delivered": _l("群发送达客户"),
    "task.created": _l("生命周期任务创建"),
    "task.done": _l("生命周期任务完成"),
    "radar.opened": _l("客户打开雷达链接"),
    "order.attributed": _l("订单归属到客户与员工"),
    "handover.finished": _l("员工交接完成"),
    "ping": _l("测试事件"),
}
STATUS_LABELS = {
    DeliveryStatus.pending.value: _l("待投递"),
    DeliveryStatus.delivered.value: _l("已送达"),
    DeliveryStatus.failed.value: _l("已放弃"),
}
PAGE = 50


@bp.app_context_processor
def webhook_banner() -> dict[str, Any]:
    """Admins see, on every page, the endpoints Siyu switched off after a day of failures."""

    def switched_off() -> list[WebhookEndpoint]:
        if not current_user.is_authenticated or not allows(current_user, Action.manage_webhooks):
            return []
        return endpoints.switched_off()

    return {"webhooks_switched_off": switched_off}


def _form(endpoint: WebhookEndpoint | None = None) -> WebhookEndpointForm:
    form = WebhookEndpointForm(obj=None)
    form.event_types.choices = [(t, str(EVENT_LABELS[t])) for t in SUBSCRIBABLE]
    if endpoint is not None and request.method == "GET":
        form.url.data = endpoint.url
        form.description.data = endpoint.description
        form.event_types.data = list(endpoint.event_types)
        form.alert_userids.data = ", ".join(endpoint.alert_userids or [])
        form.enabled.data = endpoint.enabled
    elif endpoint is None and request.method == "GET":
        form.event_types.data = list(SUBSCRIBABLE)
    return form


def _userids(text: str | None) -> list[str]:
    return [u.strip() for u in (text or "").replace("，", ",").split(",") if u.strip()]


def _list(form: WebhookEndpointForm, new_secret: str | None = None, new_id: int | None = None) -> str:
    rows = endpoints.endpoints()
    return render_template(
        "admin/webhooks/list.html",
        endpoints=rows,
        counts=endpoints.counts([e.id for e in rows]),
        form=form,
        new_secret=new_secret,
        new_id=new_id,
        labels=EVENT_LABELS,
    )


@bp.get("/webhooks")
@permission_required(Action.manage_webhooks)
def webhooks_page() -> ResponseReturnValue:
    return _list(_form())


@bp.post("/webhooks")
@permission_required(Action.manage_webhooks)
def create_webhook() -> ResponseReturnValue:
    form = _form()
    if not form.validate_on_submit():
        return _list(form), 400
    try:
        endpoint = endpoints.create_endpoint(
            form.url.data or "",
            form.description.data or "",
            list(form.event_types.data or []),
            alert_userids=_userids(form.alert_userids.data),
            actor=current_user,
        )
    except Invalid as exc:
        db.session.rollback()
        getattr(form, exc.field or "url", form.url).errors = [refusal_message(exc)]
        return _list(form), 400
    audit(
        current_user,
        "create_webhook",
        f"webhook:{endpoint.id}",
        after={"url": endpoint.url, "event_types": endpoint.event_types},
        ip=client_ip(),
    )
    db.session.commit()
    # The secret is shown this once (never cached, never redirected to); rotating makes a new one.
    return _list(_form(), new_secret=endpoint.secret, new_id=endpoint.id), 200, {"Cache-Control": "no-store"}


def _detail(endpoint: WebhookEndpoint, form: WebhookEndpointForm, new_secret: str | None = None) -> str:
    status = request.args.get("status") or None
    if status not in (None, *STATUS_LABELS):
        abort(400)
    before_id = request.args.get("before", type=int)
    rows = endpoints.log(endpoint, status=status, before_id=before_id, limit=PAGE)
    today = corp_time.today()
    replay_form = WebhookReplayForm(formdata=None, start=today - timedelta(days=1), end=today)
    return render_template(
        "admin/webhooks/detail.html",
        endpoint=endpoint,
        form=form,
        rows=rows,
        status=status,
        next_before=rows[-1][0].id if len(rows) == PAGE else None,
        counts=endpoints.counts([endpoint.id])[endpoint.id],
        labels=EVENT_LABELS,
        status_labels=STATUS_LABELS,
        new_secret=new_secret,
        action_form=EmptyForm(),
        replay_form=replay_form,
    )


@bp.get("/webhooks/<int:endpoint_id>")
@permission_required(Action.manage_webhooks)
def webhook_page(endpoint_id: int) -> ResponseReturnValue:
    endpoint = endpoints.get_endpoint(endpoint_id)
    return _detail(endpoint, _form(endpoint))


@bp.post("/webhooks/<int:endpoint_id>")
@permission_required(Action.manage_webhooks)
def update_webhook(endpoint_id: int) -> ResponseReturnValue:
    endpoint = endpoints.get_endpoint(endpoint_id)
    form = _form(endpoint)
    if not form.validate_on_submit():
        return _detail(endpoint, form), 400
    try:
        before = endpoints.update_endpoint(
            endpoint,
            url=form.url.data or "",
            description=form.description.data or "",
            event_types=list(form.event_types.data or []),
            alert_userids=_userids(form.alert_userids.data),
            enabled=bool(form.enabled.data),
        )
    except Invalid as exc:
        db.session.rollback()
        endpoint = endpoints.get_endpoint(endpoint_id)
        getattr(form, exc.field or "url", form.url).errors = [refusal_message(exc)]
        return _detail(endpoint, form), 400
    after = {"url": endpoint.url, "event_types": endpoint.event_types, "enabled": endpoint.enabled}
    audit(current_user, "update_webhook", f"webhook:{endpoint.id}", before=before, after=after, ip=client_ip())
    db.session.commit()
    flash(_("已保存"))
    return redirect(url_for("admin.webhook_page", endpoint_id=endpoint.id))


def _checked_post() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


@bp.post("/webhooks/<int:endpoint_id>/rotate")
@permission_required(Action.manage_webhooks)
def rotate_webhook_secret(endpoint_id: int) -> ResponseReturnValue:
    _checked_post()
    endpoint = endpoints.get_endpoint(endpoint_id)
    secret = endpoints.rotate_secret(endpoint)
    audit(current_user, "rotate_webhook_secret", f"webhook:{endpoint.id}", ip=client_ip())
    db.session.commit()
    return _detail(endpoint, _form(endpoint), new_secret=secret), 200, {"Cache-Control": "no-store"}


@bp.post("/webhooks/<int:endpoint_id>/test")
@permission_required(Action.manage_webhooks)
def test_webhook(endpoint_id: int) -> ResponseReturnValue:
    _checked_post()
    endpoint = endpoints.get_endpoint(endpoint_id)
    uid = endpoints.send_test(endpoint, current_user.username)
    audit(current_user, "test_webhook", f"webhook:{endpoint.id}", after={"event": uid}, ip=client_ip())
    db.session.commit()
    flash(_("测试事件 %(uid)s 已排队，稍后在下方投递记录中查看结果", uid=uid))
    return redirect(url_for("admin.webhook_page", endpoint_id=endpoint.id))


@bp.post("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/replay")
@permission_required(Action.manage_webhooks)
def replay_webhook_delivery(endpoint_id: int, delivery_id: int) -> ResponseReturnValue:
    _checked_post()
    endpoint = endpoints.get_endpoint(endpoint_id)
    endpoints.replay_one(endpoint, delivery_id)
    audit(current_user, "replay_webhook", f"webhook:{endpoint.id}", after={"delivery": delivery_id}, ip=client_ip())
    db.session.commit()
    flash(_("已重新排队投递"))
    return redirect(url_for("admin.webhook_page", endpoint_id=endpoint.id))


@bp.post("/webhooks/<int:endpoint_id>/replay-failed")
@permission_required(Action.manage_webhooks)
def replay_failed_webhooks(endpoint_id: int) -> ResponseReturnValue:
    endpoint = endpoints.get_endpoint(endpoint_id)
    form = WebhookReplayForm()
    if not form.validate_on_submit() or form.start.data is None or form.end.data is None:
        flash(_("请选择起止日期"))
        return redirect(url_for("admin.webhook_page", endpoint_id=endpoint.id))
    if form.end.data < form.start.data:
        flash(_("结束日期不能早于开始日期"))
        return redirect(url_for("admin.webhook_page", endpoint_id=endpoint.id))
    start = corp_time.midnight(form.start.data)
    end = corp_time.midnight(form.end.data + timedelta(days=1))
    n = endpoints.replay_failed(endpoint, start, end)
    period = {"start": form.start.data.isoformat(), "end": form.end.data.isoformat(), "deliveries": n}
    audit(current_user, "replay_failed_webhooks", f"webhook:{endpoint.id}", after=period, ip=client_ip())
    db.session.commit()
    flash(_("已重新排队 %(n)s 条失败的投递", n=n))
    return redirect(url_for("admin.webhook_page", endpoint_id=endpoint.id))


@bp.post("/webhooks/<int:endpoint_id>/delete")
@permission_required(Action.manage_webhooks)
def delete_webhook(endpoint_id: int) -> ResponseReturnValue:
    _checked_post()
    endpoint = endpoints.get_endpoint(endpoint_id)
    before = {"url": endpoint.url, "event_types": endpoint.event_types}
    endpoints.delete_endpoint(endpoint)
    audit(current_user, "delete_webhook", f"webhook:{endpoint_id}", before=before, ip=client_ip())
    db.session.commit()
    flash(_("已删除接收地址，未投递的事件已丢弃"))
    return redirect(url_for("admin.webhooks_page"))
