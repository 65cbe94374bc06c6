"""Channels: /api/v1/channels (create, list, get, update, delete), each with its state, config id, QR and
statistics. Writes need the admin or operator role; store managers see channels with their stores' staff."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Response, g, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from admin import whole
from admin.api import ApiError, bp, iso, json_body, string_list
from bot.extensions import db
from bot.models import Channel, Role
from bot.services.channels import codes as channels
from bot.services.channels import qr_images
from bot.services.customers import growth
from bot.services.errors import WeComRefused
from bot.services.users.accounts import audit
from bot.services.users.scope import staff_condition, store_ids

WRITERS = (Role.admin, Role.operator)


def _or_none(value: Any) -> Any:
    """On create, a field left out is no limit."""
    return None if value is channels.UNSET else value


def channel_json(c: Channel, stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "group_name": c.group_name,
        "state": c.state,
        "config_id": c.config_id,
        "qr_code": c.qr_code,
        "skip_verify": c.skip_verify,
        "staff": [s.userid for s in c.staff],
        "tag_ids": list(c.tag_ids),
        "backup_staff": [s.userid for s in c.backup_staff],
        "routed_to": list(c.routed_userids),
        "remark_template": c.remark_template,
        "daily_cap": c.daily_cap,
        "expires_at": iso(c.expires_at),
        "owner": c.owner.userid if c.owner else None,
        "qr_png_url": url_for("api.channel_qr", channel_id=c.id, _external=True),
        "active": c.active,
        "welcome": [
            {"id": w.id, "label": w.label, "text": w.text, "attachments": w.attachments, "weight": w.weight}
            for w in c.welcomes
        ],
        "stats": stats,
    }


def _staff(body: dict[str, Any]) -> list[str] | None:
    """``staff`` (userids) plus the members of ``stores`` (store ids): a code for a whole store."""
    staff = string_list(body, "staff")
    stores = body.get("stores")
    if stores is None:
        return staff
    if not isinstance(stores, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in stores):
        raise ApiError(400, "invalid_parameter", "stores is a list of store ids")
    visible = store_ids(g.api_user)
    if visible is not None and not set(stores) <= set(visible):
        raise ApiError(403, "forbidden", "a store outside your scope")
    return list(dict.fromkeys((staff or []) + channels.members_of_stores(stores)))


def _welcomes(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    value = body.get("welcome")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ApiError(400, "invalid_parameter", "welcome is a list of {label, text, attachments, weight}")
    return value


def _int_or_none(body: dict[str, Any], name: str) -> Any:
    value = body.get(name, channels.UNSET)  # left out of a PATCH: stays as it is
    if value is channels.UNSET:
        return value
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ApiError(400, "invalid_parameter", f"{name} is a whole number or null")
    return value


def _time_or_none(body: dict[str, Any], name: str) -> Any:
    """An ISO 8601 time; with an offset it is converted, without one it is taken as UTC."""
    value = body.get(name, channels.UNSET)
    if value is channels.UNSET or value is None:
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} is an ISO 8601 time or null") from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _window() -> growth.Window:
    return growth.window(request.args.get("days", 30, type=whole), request.args.get("start"), request.args.get("end"))


def _visible(query: Any) -> Any:
    if store_ids(g.api_user) is not None:
        query = query.where(Channel.staff.any(staff_condition(g.api_user)))
    return query


def _get(channel_id: int) -> Channel:
    channel = db.session.scalar(_visible(select(Channel).where(Channel.id == channel_id)))
    if channel is None:
        raise ApiError(404, "not_found", f"no channel {channel_id}")
    return channel


def _require_writer() -> None:
    if g.api_user.role not in WRITERS:
        raise ApiError(403, "forbidden", "changing channels needs the admin or operator role")


@contextmanager
def _service_errors() -> Iterator[None]:
    """A refused request rolls back and answers: 400 for the field at fault, 502 when WeCom says no."""
    try:
        yield
    except channels.ChannelError as exc:
        db.session.rollback()
        raise ApiError(400, "invalid_parameter", f"{exc.field}: {exc}") from exc
    except WeComRefused as exc:
        db.session.rollback()
        if exc.field == "staff":  # a member the request named that WeCom does not know: the caller's to fix
            raise ApiError(400, "invalid_parameter", f"staff: WeCom does not know this member ({exc.errmsg})") from exc
        raise ApiError(502, "wecom_refused", f"WeCom refused: {exc.errcode} {exc.errmsg}") from exc


def _answer(channel: Channel, status: int = 200) -> ResponseReturnValue:
    w = _window()
    data = channel_json(channel, growth.by_channel([channel.id], w)[channel.id])
    data["stats"]["variants"] = growth.by_variant(channel.id, w)
    return jsonify(data), status


@bp.post("/channels")
def create_channel() -> ResponseReturnValue:
    _require_writer()
    body = json_body()
    if not isinstance(body.get("name"), str):
        raise ApiError(400, "invalid_parameter", "name is required")
    with _service_errors():
        channel = channels.create_channel(
            body["name"],
            _staff(body) or [],
            state=body.get("state") if isinstance(body.get("state"), str) else None,
            group_name=str(body.get("group_name", "")),
            skip_verify=bool(body.get("skip_verify", True)),
            tag_ids=string_list(body, "tag_ids"),
            welcomes=_welcomes(body),
            remark_template=str(body.get("remark_template") or ""),
            expires_at=_or_none(_time_or_none(body, "expires_at")),
            daily_cap=_or_none(_int_or_none(body, "daily_cap")),
            backup_userids=string_list(body, "backup_staff"),
        )
    audit(g.api_user, "create_channel", f"channel:{channel.state}", after={"name": channel.name})
    db.session.commit()
    return _answer(channel, 201)


@bp.get("/channels")
def list_channels() -> ResponseReturnValue:
    rows = db.session.scalars(
        _visible(select(Channel))
        .options(selectinload(Channel.staff), selectinload(Channel.welcomes))
        .order_by(Channel.id.desc())
    ).all()
    stats = growth.by_channel([c.id for c in rows], _window())
    return jsonify(items=[channel_json(c, stats[c.id]) for c in rows])


@bp.get("/channels/<int:channel_id>")
def get_channel(channel_id: int) -> ResponseReturnValue:
    return _answer(_get(channel_id))


@bp.patch("/channels/<int:channel_id>")
def update_channel(channel_id: int) -> ResponseReturnValue:
    _require_writer()
    channel = _get(channel_id)
    body = json_body()
    before = {"name": channel.name, "staff": [s.userid for s in channel.staff]}
    with _service_errors():
        channels.update_channel(
            channel,
            name=body["name"] if isinstance(body.get("name"), str) else None,
            staff_userids=_staff(body),
            skip_verify=body["skip_verify"] if isinstance(body.get("skip_verify"), bool) else None,
            tag_ids=string_list(body, "tag_ids"),
            welcomes=_welcomes(body),
            remark_template=body["remark_template"] if isinstance(body.get("remark_template"), str) else None,
            expires_at=_time_or_none(body, "expires_at"),
            daily_cap=_int_or_none(body, "daily_cap"),
            backup_userids=string_list(body, "backup_staff"),
        )
    audit(
        g.api_user,
        "update_channel",
        f"channel:{channel.state}",
        before=before,
        after={"name": channel.name, "staff": [s.userid for s in channel.staff]},
    )
    db.session.commit()
    return _answer(channel)


@bp.delete("/channels/<int:channel_id>")
def delete_channel(channel_id: int) -> ResponseReturnValue:
    _require_writer()
    channel = _get(channel_id)
    with _service_errors():
        channels.delete_channel(channel)
    audit(g.api_user, "delete_channel", f"channel:{channel.state}")
    db.session.commit()
    return jsonify(id=channel.id, active=False)


@bp.get("/channels/<int:channel_id>/qr.png")
def channel_qr(channel_id: int) -> ResponseReturnValue:
    """The code as a PNG (fetched from WeCom once and kept)."""
    channel = _get(channel_id)
    try:
        png = qr_images.qr_png(channel)
    except qr_images.QrImageError as exc:
        db.session.rollback()
        raise ApiError(409, "no_qr_code", "the channel has no QR code, or WeCom's image is unreadable") from exc
    except WeComRefused as exc:
        db.session.rollback()
        raise ApiError(502, "wecom_refused", f"WeCom refused: {exc.errcode} {exc.errmsg}") from exc
    db.session.commit()
    return Response(png, mimetype="image/png")
