"""Channel codes (渠道活码): WeCom 「联系我」 contact ways that attribute customers by ``state``."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import Channel, FollowRelation, FollowStatus, FollowTag, Tag, WelcomeMessage
from bot.models._time import utcnow
from bot.services.clients import contact_api
from bot.services.directory import ensure_staff
from bot.services.users import N_

MAX_MEMBERS = 100  # members per contact way, departments expanded (41041)
MAX_ATTACHMENTS = 9


class ChannelError(ValueError):
    """A request the channel cannot take, in words for the field it concerns."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _variants(welcomes: list[dict[str, Any]]) -> list[WelcomeMessage]:
    variants = []
    for n, w in enumerate(welcomes):
        text = str(w.get("text", ""))
        attachments = list(w.get("attachments") or [])
        weight = w.get("weight", 1)
        if len(text.encode()) > 4000:
            raise ChannelError("welcome", N_("欢迎语最多 4000 字节"))
        if len(attachments) > MAX_ATTACHMENTS:
            raise ChannelError("welcome", N_("附件最多 9 个"))
        if not text and not attachments:
            raise ChannelError("welcome", N_("欢迎语需要文字或附件"))
        if not isinstance(weight, int) or weight < 1:
            raise ChannelError("welcome", N_("权重是正整数"))
        variants.append(
            WelcomeMessage(
                label=str(w.get("label") or chr(ord("A") + n))[:32], text=text, attachments=attachments, weight=weight
            )
        )
    return variants


def create_channel(
    name: str,
    staff_userids: list[str],
    *,
    state: str | None = None,
    group_name: str = "",
    skip_verify: bool = True,
    tag_ids: list[str] | None = None,
    welcomes: list[dict[str, Any]] | None = None,
) -> Channel:
    """Create the contact way in WeCom, then the channel; flushes. Raises ChannelError or WeComError."""
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise ChannelError("name", N_("名称为 1–64 个字符"))
    userids = list(dict.fromkeys(u.strip() for u in staff_userids if u.strip()))
    if not userids:
        raise ChannelError("staff", N_("至少选择一名员工"))
    if len(userids) > MAX_MEMBERS:
        raise ChannelError("staff", N_("一个渠道码最多 100 名员工"))
    state = (state or "ch" + secrets.token_hex(6)).strip()
    if not 1 <= len(state) <= 30:
        raise ChannelError("state", N_("state 为 1–30 个字符"))
    if db.session.scalar(select(Channel.id).where(Channel.state == state)) is not None:
        raise ChannelError("state", N_("state 已被其他渠道使用"))
    known_tags = set(db.session.scalars(select(Tag.tag_id).where(Tag.deleted.is_(False))))
    unknown = [t for t in tag_ids or [] if t not in known_tags]
    if unknown:
        raise ChannelError("tag_ids", N_("有标签不在标签库中"))
    channel = Channel(
        name=name,
        group_name=group_name.strip()[:64],
        state=state,
        skip_verify=skip_verify,
        tag_ids=list(tag_ids or []),
        staff=[ensure_staff(u) for u in userids],
        welcomes=_variants(welcomes or []),
    )
    db.session.add(channel)
    db.session.flush()
    # doc path/92228: type 1 is one member, 2 several; scene 2 is a QR code.
    result = contact_api().add_contact_way(
        {
            "type": 1 if len(userids) == 1 else 2,
            "scene": 2,
            "remark": name[:30],
            "skip_verify": skip_verify,
            "state": state,
            "user": userids,
        }
    )
    channel.config_id = result["config_id"]
    channel.qr_code = result.get("qr_code", "")
    db.session.flush()
    return channel


def update_channel(
    channel: Channel,
    *,
    name: str | None = None,
    staff_userids: list[str] | None = None,
    skip_verify: bool | None = None,
    tag_ids: list[str] | None = None,
    welcomes: list[dict[str, Any]] | None = None,
) -> Channel:
    """Change a channel in WeCom and here; the state (what attributes customers) never changes. Flushes."""
    if not channel.active:
        raise ChannelError("channel", N_("渠道已删除"))
    if name is not None:
        if not 1 <= len(name.strip()) <= 64:
            raise ChannelError("name", N_("名称为 1–64 个字符"))
        channel.name = name.strip()
    if staff_userids is not None:
        userids = list(dict.fromkeys(u for u in staff_userids if u))
        if not userids or len(userids) > MAX_MEMBERS:
            raise ChannelError("staff", N_("员工为 1–100 名"))
        channel.staff = [ensure_staff(u) for u in userids]
    if skip_verify is not None:
        channel.skip_verify = skip_verify
    if tag_ids is not None:
        channel.tag_ids = list(tag_ids)
    if welcomes is not None:
        channel.welcomes = _variants(welcomes)
    db.session.flush()
    contact_api().update_contact_way(
        {
            "config_id": channel.config_id,
            "remark": channel.name[:30],
            "skip_verify": channel.skip_verify,
            "state": channel.state,
            "user": [s.userid for s in channel.staff],
        }
    )
    return channel


def delete_channel(channel: Channel) -> None:
    """Delete the code in WeCom; the channel stays (inactive) so that customers keep their attribution."""
    if channel.config_id:
        contact_api().del_contact_way(channel.config_id)
    channel.active = False
    channel.deleted_at = utcnow()
    db.session.flush()


def channel_for_state(state: str) -> Channel | None:
    return db.session.scalar(select(Channel).where(Channel.state == state)) if state else None


def attribute(follow: FollowRelation, channel: Channel | None, variant_id: int | None) -> None:
    """Record where a follow relation came from and which welcome variant it got; flushes."""
    if channel is not None:
        follow.channel_id = channel.id
    if variant_id is not None:
        follow.welcome_variant_id = variant_id
    db.session.flush()


def apply_channel_tags(follow: FollowRelation, channel: Channel) -> None:
    """Tag the new customer as the channel says, in WeCom and (no callback comes back) in the mirror."""
    wanted = [t for t in channel.tag_ids if t not in {ft.tag_id for ft in follow.tags}]
    if not wanted:
        return
    contact_api().mark_tags(follow.staff.userid, follow.customer.external_userid, wanted)
    for tag in db.session.scalars(select(Tag).where(Tag.tag_id.in_(wanted))):
        follow.tags.append(FollowTag(tag_id=tag.tag_id, group_name=tag.group.name, tag_name=tag.name, type=1))
    db.session.flush()


def channel_stats(channel_ids: list[int]) -> dict[int, dict[str, int]]:
    """Adds and losses (customer deleted the member) per channel."""
    rows = db.session.execute(
        select(
            FollowRelation.channel_id,
            func.count(),
            func.count().filter(FollowRelation.status == FollowStatus.deleted_by_customer),
        )
        .where(FollowRelation.channel_id.in_(channel_ids))
        .group_by(FollowRelation.channel_id)
    ).all()
    stats = {cid: {"adds": 0, "losses": 0} for cid in channel_ids}
    for cid, adds, losses in rows:
        if cid is not None:
            stats[cid] = {"adds": int(adds), "losses": int(losses)}
    return stats
