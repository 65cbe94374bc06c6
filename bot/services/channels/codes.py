"""Channel codes (渠道活码): WeCom 「联系我」 contact ways that attribute customers by ``state``."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import Channel, FollowRelation, Staff, Store, Tag, WelcomeMessage
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.callbacks import readahead
from bot.services.clients import contact_api
from bot.services.customers.relations import record_event
from bot.services.directory.sync import ensure_staff
from bot.services.errors import Invalid, translates_wecom_errors
from bot.services.signals import tags_removed
from bot.services.tags.library import mirror_marked, sync_corp_tags
from bot.services.users.accounts import N_, audit
from bot.wecom.errors import UnknownConfig, WeComError

log = logging.getLogger(__name__)

MAX_MEMBERS = 100  # members per contact way, departments expanded (41041)
MAX_ATTACHMENTS = 9
#: a welcome's text, in bytes (doc 92599)
MAX_TEXT_BYTES = 4000
#: WeCom's "invalid tag id" (mark_tag with a tag that is gone)
INVALID_TAG = 40068
REMARK_MAX = 20  # externalcontact/remark (WeCom doc 96316)
VARIABLES = ("customer_name", "staff_name", "store_name")


def render(text: str, values: dict[str, str]) -> str:
    """Fill {customer_name}, {staff_name} and {store_name}; any other brace is left as written."""
    for name in VARIABLES:
        text = text.replace("{" + name + "}", values.get(name, ""))
    return text


def variables(customer_name: str, staff: Staff | None) -> dict[str, str]:
    """The values welcome texts and remark templates may use."""
    return {
        "customer_name": customer_name,
        "staff_name": staff.name if staff is not None else "",
        "store_name": staff.stores[0].name if staff is not None and staff.stores else "",
    }


class ChannelError(Invalid):
    """A request the channel cannot take, in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


def _variants(welcomes: list[dict[str, Any]]) -> list[WelcomeMessage]:
    variants = []
    for n, w in enumerate(welcomes):
        text = str(w.get("text", ""))
        attachments = list(w.get("attachments") or [])
        weight = w.get("weight", 1)
        if len(text.encode()) > MAX_TEXT_BYTES:
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


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise ChannelError("name", N_("名称为 1–64 个字符"))
    return name


def _members(userids: list[str], field: str, *, required: bool) -> list[str]:
    clean = list(dict.fromkeys(u.strip() for u in userids if u.strip()))
    if required and not clean:
        raise ChannelError(field, N_("至少选择一名员工"))
    if len(clean) > MAX_MEMBERS:
        raise ChannelError(field, N_("一个渠道码最多 100 名员工"))
    return clean


def members_of_stores(store_ids: list[int]) -> list[str]:
    """The active members of the given stores, for a code that routes to whole stores (taken at the time
    the code is saved: a member who joins later is added by editing the code)."""
    if not store_ids:
        return []
    return list(
        db.session.scalars(
            select(Staff.userid).where(Staff.active, Staff.stores.any(Store.id.in_(store_ids))).order_by(Staff.userid)
        )
    )


def _check_limits(remark_template: str, expires_at: datetime | None, daily_cap: int | None) -> None:
    if len(remark_template) > 64:
        raise ChannelError("remark_template", N_("备注模板最多 64 个字符"))
    if expires_at is not None and expires_at <= utcnow():
        raise ChannelError("expires_at", N_("有效期需晚于现在"))
    if daily_cap is not None and not 1 <= daily_cap <= 10000:
        raise ChannelError("daily_cap", N_("每日上限为 1–10000"))


def _contact_way_type(channel: Channel) -> int:
    # doc path/92228: type 1 routes to exactly one member and cannot later hold more, so a code with
    # several members or with backups (the routing may change) is type 2 from the start.
    return 1 if len(channel.staff) == 1 and not channel.backup_staff else 2


@translates_wecom_errors
def create_channel(
    name: str,
    staff_userids: list[str],
    *,
    state: str | None = None,
    group_name: str = "",
    skip_verify: bool = True,
    tag_ids: list[str] | None = None,
    welcomes: list[dict[str, Any]] | None = None,
    remark_template: str = "",
    expires_at: datetime | None = None,
    daily_cap: int | None = None,
    backup_userids: list[str] | None = None,
    owner: Staff | None = None,
) -> Channel:
    """Create the contact way in WeCom, then the channel; flushes. Raises ChannelError or WeComError."""
    name = _name(name)
    userids = _members(staff_userids, "staff", required=True)
    backups = [u for u in _members(backup_userids or [], "backup_staff", required=False) if u not in userids]
    state = (state or "ch" + secrets.token_hex(6)).strip()
    if not 1 <= len(state) <= 30:
        raise ChannelError("state", N_("state 为 1–30 个字符"))
    if db.session.scalar(select(Channel.id).where(Channel.state == state)) is not None:
        raise ChannelError("state", N_("state 已被其他渠道使用"))
    _check_tags(tag_ids or [])
    remark_template = remark_template.strip()
    _check_limits(remark_template, expires_at, daily_cap)
    channel = Channel(
        name=name,
        group_name=group_name.strip()[:64],
        state=state,
        skip_verify=skip_verify,
        tag_ids=list(tag_ids or []),
        staff=[ensure_staff(u) for u in userids],
        backup_staff=[ensure_staff(u) for u in backups],
        welcomes=_variants(welcomes or []),
        remark_template=remark_template,
        expires_at=expires_at,
        daily_cap=daily_cap,
        routed_userids=userids,
        owner=owner,
    )
    db.session.add(channel)
    db.session.flush()
    # doc path/92228: scene 2 is a QR code; the remark (≤ 30) is what the WeCom console lists.
    result = contact_api().add_contact_way(
        {
            "type": _contact_way_type(channel),
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


def _check_tags(tag_ids: list[str]) -> None:
    known_tags = set(db.session.scalars(select(Tag.tag_id).where(Tag.deleted.is_(False))))
    if any(t not in known_tags for t in tag_ids):
        raise ChannelError("tag_ids", N_("有标签不在标签库中"))


UNSET: Any = object()


@translates_wecom_errors
def update_channel(
    channel: Channel,
    *,
    name: str | None = None,
    staff_userids: list[str] | None = None,
    skip_verify: bool | None = None,
    tag_ids: list[str] | None = None,
    welcomes: list[dict[str, Any]] | None = None,
    remark_template: str | None = None,
    expires_at: datetime | None = UNSET,
    daily_cap: int | None = UNSET,
    backup_userids: list[str] | None = None,
) -> Channel:
    """Change a channel in WeCom and here; the state (what attributes customers) never changes. Flushes.

    ``expires_at`` and ``daily_cap`` may be set to None (no limit); left out, they stay as they are.
    """
    if not channel.active:
        raise ChannelError("channel", N_("渠道已删除"))
    if name is not None:
        channel.name = _name(name)
    if staff_userids is not None:
        was_single = _contact_way_type(channel) == 1
        channel.staff = [ensure_staff(u) for u in _members(staff_userids, "staff", required=True)]
        if was_single and len(channel.staff) > 1:
            raise ChannelError("staff", N_("单人渠道码不能改为多人，请新建渠道码"))
    if backup_userids is not None:
        staff = {s.userid for s in channel.staff}
        backups = [u for u in _members(backup_userids, "backup_staff", required=False) if u not in staff]
        if backups and _contact_way_type(channel) == 1:
            raise ChannelError("backup_staff", N_("单人渠道码不能设置备用员工，请新建渠道码"))
        channel.backup_staff = [ensure_staff(u) for u in backups]
    if skip_verify is not None:
        channel.skip_verify = skip_verify
    if tag_ids is not None:
        _check_tags(tag_ids)
        channel.tag_ids = list(tag_ids)
    if welcomes is not None:
        channel.welcomes = _variants(welcomes)
    _check_limits(
        remark_template.strip() if remark_template is not None else "",
        expires_at if expires_at is not UNSET else None,
        daily_cap if daily_cap is not UNSET else None,
    )
    if remark_template is not None:
        channel.remark_template = remark_template.strip()
    if expires_at is not UNSET:
        channel.expires_at = expires_at
    if daily_cap is not UNSET:
        channel.daily_cap = daily_cap
    channel.routed_userids = routing_for(channel)
    db.session.flush()
    contact_api().update_contact_way(
        {
            "config_id": channel.config_id,
            "remark": channel.name[:30],
            "skip_verify": channel.skip_verify,
            "state": channel.state,
            "user": channel.routed_userids,
        }
    )
    return channel


@translates_wecom_errors
def delete_channel(channel: Channel) -> None:
    """Delete the code in WeCom; the channel stays (inactive) so that customers keep their attribution."""
    if channel.config_id:
        try:
            contact_api().del_contact_way(channel.config_id)
        except UnknownConfig:
            log.info("channel %s: its contact way was already gone from WeCom", channel.id)
    channel.active = False
    channel.deleted_at = utcnow()
    db.session.flush()


# -- daily caps, backups and expiry -------------------------------------------------------------------


def adds_today(channel: Channel) -> dict[int, int]:
    """Customers each member gained through the channel since the corp's midnight."""
    rows = db.session.execute(
        select(FollowRelation.staff_id, func.count())
        .where(
            FollowRelation.channel_id == channel.id,
            FollowRelation.added_at >= corp_time.day_start(),
            FollowRelation.transferred_from_id.is_(None),  # a handover brings no one through the code
        )
        .group_by(FollowRelation.staff_id)
    ).all()
    return {staff_id: int(n) for staff_id, n in rows}


def routing_for(channel: Channel) -> list[str]:
    """Who the code should route to now: members under the daily cap, else the backups, else everyone.

    WeCom needs at least one member on a code, so with every member capped and no backups the code
    keeps its members rather than turning customers away.
    """
    members = [s.userid for s in channel.staff]
    if not channel.daily_cap:
        return members
    counts = adds_today(channel)
    open_ = [s.userid for s in channel.staff if counts.get(s.id, 0) < channel.daily_cap]
    return open_ or [s.userid for s in channel.backup_staff] or members


def reroute(channel: Channel) -> bool:
    """Point the code at ``routing_for(channel)`` if that changed; flushes. Returns whether it changed."""
    wanted = routing_for(channel)
    if not channel.active or wanted == list(channel.routed_userids):
        return False
    contact_api().update_contact_way({"config_id": channel.config_id, "state": channel.state, "user": wanted})
    log.info("channel %s now routes to %s", channel.state, ",".join(wanted))
    channel.routed_userids = wanted
    db.session.flush()
    return True


def enforce_limits() -> dict[str, int]:
    """The periodic pass: remove expired codes from WeCom, and give capped members back their code on a
    new day. Flushes; returns counts."""
    expired = rerouted = 0
    now = utcnow()
    limited = db.session.scalars(
        select(Channel).where(Channel.active, (Channel.expires_at.is_not(None)) | (Channel.daily_cap.is_not(None)))
    ).all()
    for channel in limited:
        if channel.expires_at is not None and channel.expires_at <= now:
            delete_channel(channel)
            expired += 1
        elif channel.daily_cap and reroute(channel):
            rerouted += 1
    return {"expired": expired, "rerouted": rerouted}


# -- personal codes (全员营销) -------------------------------------------------------------------------


def personal_code(staff: Staff) -> Channel | None:
    """The member's newest active personal code."""
    return db.session.scalar(
        select(Channel).where(Channel.owner_staff_id == staff.id, Channel.active).order_by(Channel.id.desc()).limit(1)
    )


def members_without_personal_code(store_id: int | None) -> list[Staff]:
    """Active members (of one store, or of the corp) who have no active personal code yet."""
    has_code = select(Channel.id).where(Channel.owner_staff_id == Staff.id, Channel.active).exists()
    query = select(Staff).where(Staff.active, ~has_code).order_by(Staff.id)
    if store_id is not None:
        query = query.where(Staff.stores.any(Store.id == store_id))
    return list(db.session.scalars(query))


def create_personal_code(
    staff: Staff, *, welcome: str = "", tag_ids: list[str] | None = None, group_name: str = ""
) -> Channel:
    """One member's own code; its state names no one (states show in exports), and is unique."""
    return create_channel(
        f"{staff.name or staff.userid} 的专属码",
        [staff.userid],
        state="p" + secrets.token_hex(8),
        group_name=group_name or "全员营销",
        tag_ids=tag_ids,
        welcomes=[{"text": welcome}] if welcome.strip() else [],
        owner=staff,
    )


def channel_for_state(state: str) -> Channel | None:
    """The channel of a 「联系我」 state; in a batch of events, looked up once per state for the batch."""
    if not state:
        return None
    channel: Channel | None = readahead.per_batch(
        ("channel", state), lambda: db.session.scalar(select(Channel).where(Channel.state == state))
    )
    return channel


def attribute(follow: FollowRelation, channel: Channel | None, variant_id: int | None) -> None:
    """Record where a follow relation came from and which welcome variant it got; flushes what it set."""
    if channel is not None:
        follow.channel_id = channel.id
    if variant_id is not None:
        follow.welcome_variant_id = variant_id
    if channel is not None or variant_id is not None:
        db.session.flush()


def apply_remark(follow: FollowRelation, channel: Channel, values: dict[str, str]) -> None:
    """Set the channel's remark on the new relation, in WeCom and (no callback comes back) in the mirror."""
    if not channel.remark_template:
        return
    remark = render(channel.remark_template, values).strip()[:REMARK_MAX]
    if not remark or remark == follow.remark:
        return
    contact_api().set_remark(follow.staff.userid, follow.customer.external_userid, remark)
    follow.remark = remark
    db.session.flush()


def apply_channel_tags(follow: FollowRelation, channel: Channel) -> None:
    """Tag the new customer as the channel says, in WeCom and (no callback comes back) in the mirror.

    Only tags the library still has are asked for. WeCom refusing them anyway (40068: a tag deleted in the
    console whose callback has not been handled yet) refreshes the library — which lets the channel forget
    the deleted tag — and tries once more with the rest. A refusal never sinks the add it belongs to: the
    customer, the attribution and the welcome are kept, and the customer's timeline says what failed."""
    for attempt in (1, 2):
        have = {ft.tag_id for ft in follow.tags}
        live = list(db.session.scalars(select(Tag).where(Tag.tag_id.in_(channel.tag_ids), Tag.deleted.is_(False))))
        wanted = [t for t in live if t.tag_id not in have]
        if not wanted:
            return
        try:
            contact_api().mark_tags(follow.staff.userid, follow.customer.external_userid, [t.tag_id for t in wanted])
        except WeComError as exc:
            if exc.retryable:
                raise  # passing trouble: the add's event is tried again, and its welcome is not sent twice
            if exc.errcode == INVALID_TAG and attempt == 1:
                log.warning("channel %s: WeCom refused its tags (%s); refreshing the tag library", channel.state, exc)
                sync_corp_tags()
                continue
            log.warning("channel %s: tagging %s refused: %s", channel.state, follow.customer.external_userid, exc)
            record_event(follow.customer, "channel_tags_refused", follow.staff.userid, f"{exc.errcode}")
            return
        mirror_marked(follow, wanted)
        return


@tags_removed.connect
def forget_tags(_sender: object, tag_ids: list[str]) -> None:
    """Tags gone from WeCom leave every channel that applied them; the audit log says which (a system
    entry per channel, shown on the audit page)."""
    gone = set(tag_ids)
    for channel in db.session.scalars(select(Channel).where(Channel.deleted_at.is_(None))):
        dropped = [t for t in channel.tag_ids if t in gone]
        if not dropped:
            continue
        channel.tag_ids = [t for t in channel.tag_ids if t not in gone]
        audit(None, "channel_tags_gone", f"channel:{channel.state}", before={"tag_ids": dropped}, name="system")
        log.warning("channel %s no longer applies tag(s) %s: gone from WeCom", channel.state, dropped)
    db.session.flush()
