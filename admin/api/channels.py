"""Channels: /api/v1/channels (create, list, get, update, delete), each with its state, config id, QR and
statistics. Writes need the edit_channels action; store managers see channels with their stores' staff."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from flask import Response, g, jsonify, url_for
from flask.typing import ResponseReturnValue
from pydantic import BeforeValidator, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from admin.api import iso, not_found
from admin.api.operations import Body, Id, Key64, Query, Text, Text30, Text32, Text64, Text4000, operation, schema
from admin.params import Day
from bot.extensions import db
from bot.models import Channel
from bot.services.channels import codes as channels
from bot.services.channels import qr_images
from bot.services.customers import growth
from bot.services.errors import Forbidden
from bot.services.library import messages as library_messages
from bot.services.users.accounts import audit
from bot.services.users.permissions import Action
from bot.services.users.scope import staff_condition, store_ids

UserIds = Annotated[list[Text64], Field(max_length=100)]


def _whole(value: Any) -> Any:
    """A query's text as a number, for a choice of numbers (Pydantic converts text only for plain ints)."""
    return int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else value


class Window(Query):
    """The statistics' period: the last ``days``, or ``start``..``end`` (at most a year)."""

    days: Annotated[Literal[7, 30, 90], BeforeValidator(_whole)] = 30
    start: Day | None = None
    end: Day | None = None


class Welcome(Body):
    label: Text32 = ""
    text: Text4000 = Field("", description="≤ 4000 bytes; {customer_name} {staff_name} {store_name}")
    attachments: list[dict[str, Any]] = Field(
        [], max_length=9, description='WeCom\'s form, or {"library_item_id": N}: an item of the content library'
    )
    weight: Id = 1


class ChannelInput(Body):
    """A channel's fields; on a change, a field left out stays as it is."""

    name: Key64 | None = None
    group_name: Text64 = ""
    state: Text30 | None = Field(None, description="on create; default: generated")
    staff: UserIds | None = None
    stores: list[Id] | None = Field(None, description="input only: add every active member of these stores to staff")
    skip_verify: bool = True
    tag_ids: list[Text] | None = None
    welcome: list[Welcome] | None = None
    remark_template: Text64 = ""
    daily_cap: Annotated[int, Field(ge=1, le=10000)] | None = Field(None, description="null: no cap")
    backup_staff: UserIds | None = None
    expires_at: Annotated[datetime, Field(strict=False)] | None = Field(
        None, description="ISO 8601; without an offset, UTC; null: never"
    )


class ChannelCreate(ChannelInput):
    name: Key64


CHANNEL_STATS = schema(
    "ChannelStats",
    {
        "type": "object",
        "properties": {
            "added": {"type": "integer"},
            "lost": {"type": "integer"},
            "net": {"type": "integer"},
            "eligible_7d": {"type": "integer", "description": "adds in the window at least 7 days old"},
            "retained_7d": {"type": "integer"},
            "retention_7d": {"type": ["number", "null"]},
            "variants": {"type": "array", "items": {"type": "object"}, "description": "one channel only"},
        },
    },
)
CHANNEL = schema(
    "Channel",
    {
        "allOf": [
            {"$ref": "#/components/schemas/ChannelInput"},
            {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "config_id": {"type": ["string", "null"]},
                    "qr_code": {"type": "string", "description": "WeCom's image URL"},
                    "qr_png_url": {"type": "string"},
                    "routed_to": {"type": "array", "items": {"type": "string"}},
                    "owner": {"type": ["string", "null"], "description": "a personal code's member"},
                    "active": {"type": "boolean"},
                    "stats": CHANNEL_STATS,
                },
            },
        ]
    },
)
CHANNEL_LIST = schema("ChannelList", {"type": "object", "properties": {"items": {"type": "array", "items": CHANNEL}}})
NO_CHANNEL = "No such channel"
WECOM_REFUSED = "WeCom refused"


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


def _staff(body: ChannelInput) -> list[str] | None:
    """``staff`` (userids) plus the members of ``stores`` (store ids): a code for a whole store."""
    if body.stores is None:
        return body.staff
    visible = store_ids(g.api_user)
    if visible is not None and not set(body.stores) <= set(visible):
        raise Forbidden("a store outside your scope", "stores")
    return list(dict.fromkeys((body.staff or []) + channels.members_of_stores(body.stores)))


def _welcomes(body: ChannelInput) -> list[dict[str, Any]] | None:
    """The variants, their attachments in WeCom's form: an entry ``{"library_item_id": N}`` is the content
    library's item N (one the caller may see), its media uploaded now and kept fresh by the library."""
    if body.welcome is None:
        return None
    return library_messages.welcome_attachments([w.model_dump(exclude_unset=True) for w in body.welcome], g.api_user)


def _given(body: ChannelInput, name: str) -> Any:
    """A field of a change: UNSET when left out (it stays as it is), else its value (null clears it)."""
    return getattr(body, name) if name in body.model_fields_set else channels.UNSET


def _utc(value: datetime | None) -> datetime | None:
    """An ISO 8601 time; with an offset it is converted, without one it is taken as UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None and value.tzinfo else value


def _visible(query: Any) -> Any:
    if store_ids(g.api_user) is not None:
        query = query.where(Channel.staff.any(staff_condition(g.api_user)))
    return query


def _get(channel_id: int) -> Channel:
    channel = db.session.scalar(_visible(select(Channel).where(Channel.id == channel_id)))
    if channel is None:
        raise not_found("channel", channel_id)
    return channel


def _answer(channel: Channel, window: Window, status: int = 200) -> ResponseReturnValue:
    w = _period(window)
    data = channel_json(channel, growth.by_channel([channel.id], w)[channel.id])
    data["stats"]["variants"] = growth.by_variant(channel.id, w)
    return jsonify(data), status


def _period(window: Window) -> growth.Window:
    start, end = (d.isoformat() if d is not None else None for d in (window.start, window.end))
    return growth.window(window.days, start, end)


@operation(
    "POST",
    "/channels",
    "Create a channel code (a WeCom 「联系我」 contact way)",
    body=ChannelCreate,
    query=Window,
    action=Action.edit_channels,
    responses={201: ("Created", CHANNEL), 502: WECOM_REFUSED},
)
def create_channel(body: ChannelCreate, query: Window) -> ResponseReturnValue:
    channel = channels.create_channel(
        body.name,
        _staff(body) or [],
        state=body.state or None,
        group_name=body.group_name,
        skip_verify=body.skip_verify,
        tag_ids=body.tag_ids,
        welcomes=_welcomes(body),
        remark_template=body.remark_template,
        expires_at=_utc(body.expires_at),
        daily_cap=body.daily_cap,
        backup_userids=body.backup_staff,
    )
    audit(g.api_user, "create_channel", f"channel:{channel.state}", after={"name": channel.name})
    db.session.commit()
    return _answer(channel, query, 201)


@operation(
    "GET",
    "/channels",
    "Channel codes (渠道活码) with their statistics over 7/30/90 days or start..end",
    query=Window,
    responses={200: ("The channels", CHANNEL_LIST)},
)
def list_channels(query: Window) -> ResponseReturnValue:
    rows = db.session.scalars(
        _visible(select(Channel))
        .options(selectinload(Channel.staff), selectinload(Channel.welcomes))
        .order_by(Channel.id.desc())
    ).all()
    stats = growth.by_channel([c.id for c in rows], _period(query))
    return jsonify(items=[channel_json(c, stats[c.id]) for c in rows])


@operation(
    "GET",
    "/channels/<int:channel_id>",
    "One channel, its statistics and the welcome variants' split",
    query=Window,
    responses={200: ("The channel", CHANNEL), 404: NO_CHANNEL},
)
def get_channel(channel_id: int, query: Window) -> ResponseReturnValue:
    return _answer(_get(channel_id), query)


@operation(
    "PATCH",
    "/channels/<int:channel_id>",
    "Change any field but the state; expires_at and daily_cap may be null (no limit)",
    body=ChannelInput,
    query=Window,
    action=Action.edit_channels,
    responses={200: ("Changed", CHANNEL), 404: NO_CHANNEL, 502: WECOM_REFUSED},
)
def update_channel(channel_id: int, body: ChannelInput, query: Window) -> ResponseReturnValue:
    channel = _get(channel_id)
    before = {"name": channel.name, "staff": [s.userid for s in channel.staff]}
    expires_at = _given(body, "expires_at")
    channels.update_channel(
        channel,
        name=body.name,
        staff_userids=_staff(body),
        skip_verify=body.skip_verify if "skip_verify" in body.model_fields_set else None,
        tag_ids=body.tag_ids,
        welcomes=_welcomes(body),
        remark_template=body.remark_template if "remark_template" in body.model_fields_set else None,
        expires_at=expires_at if expires_at is channels.UNSET else _utc(expires_at),
        daily_cap=_given(body, "daily_cap"),
        backup_userids=body.backup_staff,
    )
    audit(
        g.api_user,
        "update_channel",
        f"channel:{channel.state}",
        before=before,
        after={"name": channel.name, "staff": [s.userid for s in channel.staff]},
    )
    db.session.commit()
    return _answer(channel, query)


@operation(
    "DELETE",
    "/channels/<int:channel_id>",
    "Delete the code in WeCom; the channel stays, inactive, for attribution",
    action=Action.edit_channels,
    responses={200: "Deleted", 404: NO_CHANNEL, 502: WECOM_REFUSED},
)
def delete_channel(channel_id: int) -> ResponseReturnValue:
    channel = _get(channel_id)
    channels.delete_channel(channel)
    audit(g.api_user, "delete_channel", f"channel:{channel.state}")
    db.session.commit()
    return jsonify(id=channel.id, active=False)


@operation(
    "GET",
    "/channels/<int:channel_id>/qr.png",
    "The code as a PNG image",
    responses={
        200: ("PNG", "image/png"),
        404: NO_CHANNEL,
        409: "The channel has no usable code",
        502: WECOM_REFUSED,
    },
)
def channel_qr(channel_id: int) -> ResponseReturnValue:
    """The code as a PNG (fetched from WeCom once and kept)."""
    png = qr_images.qr_png(_get(channel_id))
    db.session.commit()
    return Response(png, mimetype="image/png")
