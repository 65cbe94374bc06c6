"""The brand's endpoints: registered by admins, each with a signing secret of its own (shown once; rotated
with an overlap in which both secrets sign), its delivery log, replays and a test event.

An endpoint's URL is https and resolves to a public address, except in sandbox mode (a receiver on this
machine is how the demo and the tests listen): no request forgery towards this machine or the private
network behind it. The check runs on registration and again before every batch of deliveries."""

from __future__ import annotations

import ipaddress
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update

from bot.extensions import db
from bot.models import DeliveryStatus, User, WebhookDelivery, WebhookEndpoint, WebhookEvent
from bot.models._time import utcnow
from bot.services.clients import settings
from bot.services.errors import Invalid, NotFound
from bot.services.users.accounts import N_
from bot.services.webhooks import outbox
from bot.services.webhooks.events import SUBSCRIBABLE, Ping

#: how long the previous secret keeps signing after a rotation
ROTATION_OVERLAP = timedelta(hours=24)
MAX_URL = 1024


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_public(host: str, port: int) -> None:
    """Refuse a host that does not resolve, or resolves to any address that is not public (loopback,
    link-local, the private ranges, reserved, multicast)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Invalid(N_("无法解析该地址的主机名"), "url") from exc
    if not infos or not all(_public(str(info[4][0])) for info in infos):
        raise Invalid(N_("该地址指向本机或内网，不允许"), "url")


def check_url(url: str, *, sandbox: bool | None = None) -> str:
    """The URL as it will be called, or Invalid naming what is wrong with it."""
    sandbox = settings().sandbox if sandbox is None else sandbox
    url = (url or "").strip()
    if not url or len(url) > MAX_URL:
        raise Invalid(N_("请填写地址（不超过 1024 个字符）"), "url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Invalid(N_("地址格式不正确"), "url") from exc
    allowed = ("https", "http") if sandbox else ("https",)
    if parts.scheme not in allowed:
        raise Invalid(N_("地址必须以 https:// 开头"), "url")
    if not parts.hostname or parts.username or parts.password:
        raise Invalid(N_("地址须有主机名，且不能含用户名或密码"), "url")
    if parts.fragment:
        raise Invalid(N_("地址不能含 # 片段"), "url")
    if not sandbox:
        resolve_public(parts.hostname, port or 443)
    return url


def _types(event_types: list[str]) -> list[str]:
    chosen = [t for t in dict.fromkeys(event_types) if t]
    unknown = [t for t in chosen if t not in SUBSCRIBABLE]
    if unknown:
        raise Invalid(N_("未知的事件类型"), "event_types")
    if not chosen:
        raise Invalid(N_("至少选择一种事件"), "event_types")
    return chosen


def _userids(userids: list[str]) -> list[str]:
    cleaned = [u.strip() for u in userids if u and u.strip()]
    if len(cleaned) > 20 or any(len(u) > 64 for u in cleaned):
        raise Invalid(N_("告警成员最多 20 个，每个账号不超过 64 个字符"), "alert_userids")
    return list(dict.fromkeys(cleaned))


def create_endpoint(
    url: str, description: str, event_types: list[str], *, alert_userids: list[str], actor: User | None
) -> WebhookEndpoint:
    """A new, enabled endpoint with a fresh secret (read it from the row now: it is shown once). Flushes."""
    endpoint = WebhookEndpoint(
        url=check_url(url),
        description=(description or "").strip()[:256],
        event_types=_types(event_types),
        alert_userids=_userids(alert_userids),
        secret=new_secret(),
        enabled=True,
        created_by_id=actor.id if actor else None,
    )
    db.session.add(endpoint)
    db.session.flush()
    outbox.forget_subscribers()
    return endpoint


def update_endpoint(
    endpoint: WebhookEndpoint,
    *,
    url: str,
    description: str,
    event_types: list[str],
    alert_userids: list[str],
    enabled: bool,
) -> dict[str, Any]:
    """Edit it; switching it back on clears why Siyu had switched it off. Returns what changed. Flushes."""
    before = {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "alert_userids": list(endpoint.alert_userids or []),
        "enabled": endpoint.enabled,
    }
    endpoint.url = check_url(url)
    endpoint.description = (description or "").strip()[:256]
    endpoint.event_types = _types(event_types)
    endpoint.alert_userids = _userids(alert_userids)
    if enabled and not endpoint.enabled:
        endpoint.disabled_reason, endpoint.disabled_at = None, None
    endpoint.enabled = enabled
    db.session.flush()
    outbox.forget_subscribers()
    return before


def rotate_secret(endpoint: WebhookEndpoint, now: datetime | None = None) -> str:
    """A new secret; the old one keeps signing beside it for ROTATION_OVERLAP. Returns the new one."""
    now = now or utcnow()
    endpoint.previous_secret, endpoint.previous_expires_at = endpoint.secret, now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    db.session.flush()
    return endpoint.secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> list[str]:
    """The secrets that sign its deliveries now: the current one, and the previous during the overlap."""
    now = now or utcnow()
    keys = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_expires_at and endpoint.previous_expires_at > now:
        keys.append(endpoint.previous_secret)
    return keys


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Gone with its deliveries: what was queued for it is dropped, never sent. Flushes."""
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    db.session.delete(endpoint)
    db.session.flush()
    outbox.forget_subscribers()


def endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(N_("该接收地址不存在"), "endpoint")
    return endpoint


def switched_off() -> list[WebhookEndpoint]:
    """Endpoints Siyu switched off after a day of failures: the panel's banner."""
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.enabled.is_(False), WebhookEndpoint.disabled_reason.is_not(None)
    )
    return list(db.session.scalars(query.order_by(WebhookEndpoint.id)))


def counts(endpoint_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per endpoint: deliveries in each status."""
    rows = db.session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.endpoint_id.in_(endpoint_ids))
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
    )
    out: dict[int, dict[str, int]] = {i: {s.value: 0 for s in DeliveryStatus} for i in endpoint_ids}
    for endpoint_id, status, n in rows:
        out[endpoint_id][DeliveryStatus(status).value] = n
    return out


def log(endpoint: WebhookEndpoint, *, status: str | None = None, before_id: int | None = None, limit: int = 50) -> Any:
    """The delivery log, newest first, paged by id."""
    query = (
        select(WebhookDelivery, WebhookEvent.uid, WebhookEvent.type, WebhookEvent.occurred_at)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
    )
    if status:
        query = query.where(WebhookDelivery.status == DeliveryStatus(status))
    if before_id:
        query = query.where(WebhookDelivery.id < before_id)
    return db.session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit)).all()


def get_delivery(endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    row = db.session.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != endpoint.id:
        raise NotFound(N_("该投递记录不存在"), "delivery")
    return row


def replay(deliveries: Any, now: datetime | None = None) -> int:
    """Send these deliveries again (the same event id: receivers dedupe), from now. Returns how many."""
    now = now or utcnow()
    result = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(deliveries))
        .values(status=DeliveryStatus.pending, next_attempt_at=now, created_at=now, attempts=0)
        .execution_options(synchronize_session=False)
    )
    n = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if n:
        db.session.info[outbox.PENDING] = True
    return n


def replay_one(endpoint: WebhookEndpoint, delivery_id: int) -> int:
    delivery = get_delivery(endpoint, delivery_id)
    return replay([delivery.id])


def replay_failed(endpoint: WebhookEndpoint, start: datetime, end: datetime) -> int:
    """Every delivery given up on in [start, end) (by when it was created), again."""
    failed = select(WebhookDelivery.id).where(
        WebhookDelivery.endpoint_id == endpoint.id,
        WebhookDelivery.status == DeliveryStatus.failed,
        WebhookDelivery.created_at >= start,
        WebhookDelivery.created_at < end,
    )
    return replay(failed)


def send_test(endpoint: WebhookEndpoint, actor: str) -> str:
    """A ``ping`` event to this endpoint only, queued like any other; returns its event id. Flushes."""
    if not endpoint.enabled:
        raise Invalid(N_("接收地址已停用：请先启用再发送测试事件"), "endpoint")
    data = Ping(message=f"来自私域助手的测试事件（{actor}）", endpoint_id=endpoint.id).model_dump()
    return outbox.record("ping", [(data, None)], [endpoint.id])[0]
