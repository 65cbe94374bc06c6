"""The sandbox's demo corp: what ``flask dev`` sets up on its first start so that every page has life in it.

Channels for the states the simulator scans (a store code with an A/B welcome, a live-room campaign code, a
personal code for each member of one store), segments, a lifecycle rule switched on, a draft and a dispatched
mass send, a customer group and an invitation to it by tag, library items of four kinds (the link a tracked
radar link, sent in a mass send of its own), two groups of quick replies, a member who left with customers and
a group waiting for a handover, a draft and a posted customer moment (客户朋友圈) and members' own moments, the
first store's handover settings (删人提醒 in the digest, leavers handed over after 7 days), the brand's data
(``bot.demo_brand``: a membership ladder, a year of orders, RFM classes), and a webhook endpoint at the
sandbox's own receiver (the brand's CRM, which verifies each delivery). The simulator then acts on them:
customers scan the codes, members confirm the sends and post the moment, customers join by the code, open the
radar link and like and comment on the moment. Made once: a corp that has the store code is left as it is.
Every step goes through the same services the panel uses, so the demo shows real behaviour. Then the brand's
own customer fields (肤质, 关注品类, …) filled for some customers, and a segment by one.
"""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from urllib.parse import urlsplit

import qrcode
import requests
from sqlalchemy import select

from bot.demo_brand import seed_brand_data
from bot.extensions import db
from bot.models import Channel, Customer, ItemKind, LibraryItem, Staff, Store, User, WebhookEndpoint
from bot.sandbox.corp import FakeCorp
from bot.sandbox.handover import resign
from bot.sandbox.moments import post_own_moment
from bot.services.channels import codes
from bot.services.clients import settings
from bot.services.customers import fields
from bot.services.directory.sync import sync_directory
from bot.services.groups import invites
from bot.services.groups import mirror as groups
from bot.services.handover import store_rules
from bot.services.library import folders, items, replies
from bot.services.lifecycle import rules as lifecycle
from bot.services.moments import compose as moments
from bot.services.moments.jobs import start_moment
from bot.services.segments import rules as segments
from bot.services.sends import compose
from bot.services.sends.jobs import start_send_if_due
from bot.services.tags import library as tags
from bot.services.webhooks import endpoints as webhooks
from bot.services.webhooks.events import SUBSCRIBABLE

log = logging.getLogger(__name__)

#: the states the simulator scans (bot.sandbox.simulator.random_activity)
STORE_STATE, LIVE_STATE = "store-qr", "live-room"
WELCOME_A = "{customer_name}您好，我是{store_name}的{staff_name}，到店出示本消息领取新客礼。"
WELCOME_B = "欢迎关注{store_name}！我是您的专属顾问{staff_name}，有任何问题随时找我。"
DRAFT_TEXT = "本周六会员日，全场 8 折，欢迎到店。"
SENT_TEXT = "{store_name}新品已到店，回复“预约”为您留货。"
MOMENT_DRAFT = "元旦限定礼盒开始预约，老会员专享加赠。"
MOMENT_TEXT = "冬季新品到店，欢迎来试！本周到店出示朋友圈截图，领取小样一份。"
#: a mini program the demo's item opens (WeChat's own demo AppID, as WeCom's JS-SDK page shows it)
DEMO_APPID = "wx8bd80126147df384"
REPLIES = {
    "开场白": [
        ("问候", "{customer_name}您好，我是{store_name}的{staff_name}，有什么可以帮您？"),
        ("到店邀请", "{customer_name}，本周末{store_name}有会员日活动，欢迎到店体验。"),
    ],
    "售后": [
        ("退换货", "您好{customer_name}，购买后 7 天内未拆封可退换，请携带小票到{store_name}办理。"),
        ("营业时间", "{store_name}每天 10:00–22:00 营业，期待您的光临。"),
    ],
}


def seed_demo(admin: User, corp: FakeCorp) -> list[str]:
    """Set up the demo corp once (committing as it goes); returns what was made, for the log."""
    if db.session.scalar(select(Channel.id).where(Channel.state == STORE_STATE)) is not None:
        _tell_receiver()  # the sandbox's receiver forgets its secret when the process ends
        return []
    made_hook = _webhook(admin)
    db.session.commit()
    _tell_receiver()
    stores = list(db.session.scalars(select(Store).where(Store.active).order_by(Store.id)))
    staffed = [s for s in stores if s.staff]
    if not staffed:
        return []
    store = staffed[0]
    members = sorted(store.staff, key=lambda m: m.userid)
    everyone = list(db.session.scalars(select(Staff).where(Staff.active).order_by(Staff.userid)))
    tag_ids = {name.split(" / ")[-1]: tag_id for tag_id, name in tags.labelled()}
    made: list[str] = [made_hook]

    codes.create_channel(
        f"{store.name}门店码",
        [m.userid for m in members],
        state=STORE_STATE,
        tag_ids=[t for t in (tag_ids.get("新客"),) if t],
        welcomes=[
            {"label": "A", "text": WELCOME_A, "weight": 1},
            {"label": "B", "text": WELCOME_B, "weight": 1},
        ],
        remark_template="{customer_name}-{store_name}",
    )
    codes.create_channel(
        "直播间活码",
        [m.userid for m in everyone[:3]],
        state=LIVE_STATE,
        tag_ids=[t for t in (tag_ids.get("VIP"),) if t],
        welcomes=[{"text": "感谢来自直播间的您！回复“福利”领取直播专属券。"}],
    )
    db.session.commit()
    made.append("two channel codes")
    for staff in codes.members_without_personal_code(store.id):  # 全员营销: a code of their own each
        codes.create_personal_code(staff, welcome="您好，我是{staff_name}，很高兴为您服务。", tag_ids=[])
        db.session.commit()
    made.append(f"personal codes for {store.name}")

    vip = tag_ids.get("VIP")
    if vip:
        segments.save_segment("VIP 客户", {"op": "and", "conditions": [{"type": "tags", "tag_ids": [vip]}]}, admin)
    segments.save_segment("30 天没有互动", {"op": "and", "conditions": [{"type": "inactive_days", "days": 30}]}, admin)
    rule = lifecycle.save_rule({"template": "new_customer"}, admin)
    lifecycle.set_enabled(rule, admin, True)
    db.session.commit()
    made.append("segments and a lifecycle rule switched on")

    customers = {"rule": {"op": "and", "conditions": [{"type": "lost", "value": False}]}}
    compose.save_draft({"name": "周末会员日预告", "text": DRAFT_TEXT, "target": customers}, admin)
    sent = compose.save_draft({"name": "新品上市通知", "text": SENT_TEXT, "target": customers}, admin)
    compose.approve(sent, admin)
    db.session.commit()
    start_send_if_due(sent)  # the worker dispatches it; the simulator's members confirm it
    made.append("a draft and a dispatched mass send")

    group = corp.create_group(members[0].userid, f"{store.name}会员群")
    groups.sync_all()
    db.session.commit()
    if vip:
        invite = invites.create_invite(
            {
                "name": "邀请 VIP 入会员群",
                "chat_ids": [group.chat_id],
                "target": {"rule": {"op": "and", "conditions": [{"type": "tags", "tag_ids": [vip]}]}},
            },
            admin,
        )
        db.session.commit()
        made.append(f"a group and an invitation to it ({invite.send.name})")
    made.append(_library(admin, store, tag_ids))
    db.session.commit()
    made.append(_radar_send(admin, store))
    db.session.commit()
    made.append(_moments(admin, corp, store))
    db.session.commit()
    made.append(_leaver(corp, {m.userid for m in members} | {m.userid for m in everyone[:3]}))
    db.session.commit()
    # the first store hears of 删人 in the daily digest, and hands a leaver over to its manager after 7 days
    store_rules.set_store_rules(store.id, "digest", 7, "", admin)
    db.session.commit()
    made.append(f"{store.name}: 删人提醒 in the digest, leavers handed over after 7 days")
    made.append(seed_brand_data(admin, corp, STORE_STATE))
    db.session.commit()
    made.append(_custom_fields(admin))
    db.session.commit()
    log.info("sandbox demo corp: %s", "; ".join(made))
    return made


def _custom_fields(admin: User) -> str:
    """The brand's own customer fields (a beauty brand's), filled in for some customers as members would, and a
    segment by one of them."""
    skin = fields.define_field("肤质", "choice", "members", ["干性", "油性", "混合", "敏感"])
    likes = fields.define_field("关注品类", "choices", "members", ["护肤", "彩妆", "香水", "身体护理"])
    fields.define_field("职业", "text", "members")
    budget = fields.define_field("月度预算（元）", "number", "users")
    fields.define_field("结婚纪念日", "date", "members")
    customers = db.session.scalars(select(Customer).order_by(Customer.id).limit(40)).all()
    for n, customer in enumerate(customers):
        wanted = {
            skin: [o["id"] for o in skin.options][n % 4],
            likes: sorted({[o["id"] for o in likes.options][n % 4], [o["id"] for o in likes.options][n % 3]}),
        }
        if n % 3 == 0:
            wanted[budget] = Decimal(300 + 100 * (n % 7))
        fields.set_values(customer, wanted, by="demo")
    oily = [o["id"] for o in skin.options if o["label"] == "油性"]
    segments.save_segment(
        "油性肌肤",
        {"op": "and", "conditions": [{"type": "field", "field_id": skin.id, "op": "in", "values": oily}]},
        admin,
    )
    return f"five customer fields, filled for {len(customers)} customers, and a segment by skin type"


def _leaver(corp: FakeCorp, busy: set[str]) -> str:
    """A member (not one the demo's codes route to) who leaves with two customers and a group: the
    员工交接 page has something waiting. Flushes."""
    leaver = db.session.scalar(
        select(Staff).where(Staff.active, Staff.userid.not_in(busy)).order_by(Staff.userid.desc())
    )
    if leaver is None:
        return "no member to leave"
    people = [corp.add_contact(name, 2, leaver.userid)[0].external_userid for name in ("林晓", "周敏")]
    corp.create_group(leaver.userid, f"{leaver.name}的老客群", customers=people)
    resign(corp, leaver.userid)
    sync_directory()
    groups.sync_all()
    return f"{leaver.userid} left with 2 customers and a group"


def _moments(admin: User, corp: FakeCorp, store: Store) -> str:
    """A draft moment, and one the store's members are asked to post (with the library's poster): the
    simulator's members post it and customers like and comment; two members post moments of their own."""
    poster = db.session.scalar(
        select(LibraryItem.id).where(LibraryItem.kind == ItemKind.image).order_by(LibraryItem.id)
    )
    moments.save_draft({"text": MOMENT_DRAFT, "senders": {"everyone": True}}, admin)
    raw = {"text": MOMENT_TEXT, "attachments": [poster] if poster else [], "senders": {"store_ids": [store.id]}}
    posted = moments.save_draft(raw, admin)
    moments.approve(posted, admin)
    db.session.commit()
    start_moment(posted)  # the worker creates WeCom's task; tracking polls who posted
    for member in sorted(store.staff, key=lambda m: m.userid)[:2]:
        post_own_moment(corp, member.userid, f"{store.name}今天的新品，欢迎来店里看看。", "image")
    return "a draft and a posted customer moment, and members' own moments"


def _receiver_url() -> str:
    """The sandbox's webhook receiver (the brand's system), beside the fake WeCom API."""
    parts = urlsplit(settings().wecom_api_base or "")
    return f"{parts.scheme}://{parts.netloc}/sandbox/webhook-receiver"


def _webhook(admin: User) -> str:
    """An endpoint at the sandbox's receiver wanting every event type. Flushes."""
    webhooks.create_endpoint(
        _receiver_url(), "沙箱中的品牌 CRM（演示）", list(SUBSCRIBABLE), alert_userids=[], actor=admin
    )
    return "a webhook endpoint at the sandbox's receiver"


def _tell_receiver() -> None:
    """Give the sandbox's receiver the demo endpoint's secret, as an operator pastes it into their CRM."""
    endpoint = db.session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.url == _receiver_url()))
    if endpoint is None:
        return
    try:
        requests.post(f"{_receiver_url()}/secret", json={"secret": endpoint.secret}, timeout=5)
    except requests.RequestException:
        log.warning("the sandbox's webhook receiver could not be given its secret")


def _png(text: str) -> bytes:
    """A small image for the demo's items: a QR code of ``text`` (what brands most often send)."""
    out = io.BytesIO()
    qrcode.make(text, box_size=6, border=2).save(out)
    return out.getvalue()


def _radar_send(admin: User, store: Store) -> str:
    """A dispatched mass send carrying the tracked link: each member's task holds their radar link, which the
    simulator's customers open (bot.sandbox.radar). Flushes."""
    link = db.session.scalar(select(LibraryItem).where(LibraryItem.tracked.is_(True)))
    if link is None:
        return "no radar link"
    in_store = {"rule": {"op": "and", "conditions": [{"type": "store", "store_ids": [store.id]}]}}
    body = {"name": "会员日活动（雷达链接）", "text": "会员日详情请点开看看：", "target": in_store}
    send = compose.save_draft({**body, "attachments": [{"type": "library", "item_id": link.id}]}, admin)
    compose.approve(send, admin)
    db.session.commit()
    start_send_if_due(send)
    return "a dispatched mass send with a radar link"


def _library(admin: User, store: Store, tag_ids: dict[str, str]) -> str:
    """Library items of four kinds (one for the first store, tagged for the sidebar's suggestions) and two
    quick-reply groups with variables. Flushes."""
    season = folders.save_folder({"name": "冬季上新"}, admin)
    vip = [t for t in (tag_ids.get("VIP"),) if t]
    items.save_item({"kind": "text", "title": "新客开场白", "text": "欢迎加入会员，首单立减 20 元。"}, admin)
    items.save_item(
        {"kind": "image", "title": "冬季新品海报", "folder_id": season.id, "tag_ids": vip},
        admin,
        file=("winter.png", _png("https://example.com/winter")),
    )
    items.save_item(
        {
            "kind": "link",
            "title": "会员日活动详情",
            "url": "https://example.com/member-day",
            "description": "会员日全场 8 折，积分双倍",
            "folder_id": season.id,
            "store_ids": [store.id],
            # A radar link (雷达链接): its openers are told to their member and tagged VIP.
            "tracked": True,
            "open_tag_ids": vip,
        },
        admin,
        cover=("member-day.png", _png("https://example.com/member-day")),
    )
    items.save_item(
        {"kind": "miniprogram", "title": "积分商城", "appid": DEMO_APPID, "page": "pages/mall/index.html"},
        admin,
        cover=("mall.png", _png("mall")),
    )
    for order, (name, scripts) in enumerate(REPLIES.items()):
        group = replies.save_group({"name": name, "order": order}, admin)
        for title, text in scripts:
            replies.save_reply({"group_id": group.id, "title": title, "text": text}, admin)
    return "library items of four kinds and two quick-reply groups"
