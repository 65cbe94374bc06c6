"""The customer simulator: people doing things in the fake corp, each reported to Siyu as WeCom would,
with a real signed, encrypted callback POSTed to the webhook (and re-sent, like WeCom, when the answer
is not a 200 within 5 seconds).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import requests

from bot.sandbox.corp import Contact, FakeCorp, FakeGroup
from bot.sandbox.handover import customer_refuses, resign, take_over
from bot.sandbox.members import confirm_mass_task
from bot.sandbox.moments import someone_posts_or_reacts
from bot.sandbox.purchases import someone_buys
from bot.sandbox.radar import someone_reads
from bot.wecom.crypto import CallbackCrypto

log = logging.getLogger(__name__)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉婷雪琳晨欣怡浩宇子轩梓涵"
STORES = ["静安寺店", "陆家嘴店", "徐家汇店", "五角场店", "南京西路店", "虹桥天地店"]
POSITIONS = ["店长", "导购", "导购", "美容顾问"]
TAG_LIBRARY = {
    "客户等级": ["新客", "老客", "VIP"],
    "兴趣偏好": ["护肤", "彩妆", "香氛"],
    "来源渠道": ["门店扫码", "直播间", "朋友推荐"],
}
#: WeCom gives up after the first try plus three re-sends (WeCom doc 96361)
WECOM_SENDS = 4


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def event_xml(
    corp_id: str,
    event: str,
    create_time: int | None = None,
    *,
    from_user: str = "sys",
    msg_type: str = "event",
    **fields: Any,
) -> str:
    """A decrypted callback body in WeCom's format; field names are given in WeCom's spelling."""
    parts = [
        f"<ToUserName>{cdata(corp_id)}</ToUserName>",
        f"<FromUserName>{cdata(from_user)}</FromUserName>",
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
        f"<MsgType>{cdata(msg_type)}</MsgType>",
    ]
    if event:
        parts.append(f"<Event>{cdata(event)}</Event>")
    for name, value in fields.items():
        if isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        elif isinstance(value, list | tuple):
            items = "".join(f"<Item>{cdata(str(v))}</Item>" for v in value)
            parts.append(f"<{name}>{items}</{name}>")
        else:
            parts.append(f"<{name}>{cdata(str(value))}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


@dataclass
class Delivery:
    """How WeCom's delivery of one callback went: the status of each send."""

    statuses: list[int]

    @property
    def acknowledged(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == 200


class Simulator:
    def __init__(
        self,
        corp: FakeCorp,
        crypto: CallbackCrypto,
        webhook_url: str,
        *,
        seed: int | None = None,
        http: requests.Session | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.corp = corp
        self.crypto = crypto
        self.webhook_url = webhook_url
        self.rng = random.Random(seed)
        self.http = http or requests.Session()
        self.timeout = timeout
        #: where the brand's systems send their orders (Siyu's ``/api/v1/orders``) and the API token they
        #: use; until set, nobody buys
        self.brand_api: tuple[str, str] | None = None

    # -- delivery -------------------------------------------------------------------------------

    def envelope(self, plaintext: str) -> tuple[str, dict[str, str]]:
        return self.crypto.encrypt(plaintext, nonce=secrets.token_hex(8))

    def deliver(self, plaintext: str, *, sends: int = WECOM_SENDS) -> Delivery:
        """POST like WeCom: re-send on anything but a 200 (or no answer in 5 s), up to 3 more times."""
        body, params = self.envelope(plaintext)
        statuses = []
        for _ in range(sends):
            try:
                res = self.http.post(
                    self.webhook_url,
                    params=params,
                    data=body.encode(),
                    timeout=self.timeout,
                    headers={"Content-Type": "text/xml"},
                )
                statuses.append(res.status_code)
                if res.status_code == 200:
                    break
            except requests.RequestException:
                statuses.append(0)
        return Delivery(statuses)

    # -- the corp -------------------------------------------------------------------------------

    def seed_corp(self, stores: int = 3, staff_per_store: int = 3) -> None:
        """Stores, staff and a tag library, as a brand would have set up in WeCom."""
        for s in range(stores):
            dep = self.corp.add_department(STORES[s % len(STORES)] + ("" if s < len(STORES) else str(s)))
            for n in range(staff_per_store):
                userid = f"staff{dep:02d}{n + 1:02d}"
                position = POSITIONS[n % len(POSITIONS)]
                # The first member of each store is its manager (店长), the department's leader in WeCom.
                self.corp.add_user(userid, self.person_name(), dep, position, leader=n == 0)
        for group, names in TAG_LIBRARY.items():
            self.corp.add_tags({"group_name": group, "tag": [{"name": n} for n in names]})

    def person_name(self) -> str:
        return self.rng.choice(SURNAMES) + "".join(self.rng.choice(GIVEN) for _ in range(self.rng.randint(1, 2)))

    def pick_staff(self) -> str:
        return self.rng.choice(sorted(self.corp.users))

    # -- what people do -------------------------------------------------------------------------

    def contact_change(self, change_type: str, userid: str, external_userid: str, **fields: Any) -> Delivery:
        """Deliver a change_external_contact callback of ``change_type`` for one member and customer."""
        return self.deliver(
            event_xml(
                self.corp.corp_id,
                "change_external_contact",
                ChangeType=change_type,
                UserID=userid,
                ExternalUserID=external_userid,
                **fields,
            )
        )

    def customer_adds(
        self, userid: str | None = None, state: str = "", *, welcome: bool = True, half: bool = False
    ) -> tuple[Contact, Delivery]:
        """A customer scans a code (state) and adds a member: add_external_contact with a welcome code."""
        userid = userid or self.pick_staff()
        contact, code = self.corp.add_contact(self.person_name(), self.rng.choice([1, 2]), userid, state)
        fields: dict[str, Any] = {}
        if state:
            fields["State"] = state
        if welcome:
            fields["WelcomeCode"] = code
        change = "add_half_external_contact" if half else "add_external_contact"
        return contact, self.contact_change(change, userid, contact.external_userid, **fields)

    def customer_approves_archiving(self, external_userid: str, userid: str) -> Delivery:
        """In a corp using chat archiving (会话存档), a customer who added ``userid`` agrees to it:
        msg_audit_approved with a fresh welcome code, the one to welcome them with (WeCom doc 92005; the add
        itself came without one). The code lives 20 s and is accepted once, like an add's."""
        with self.corp.lock:
            if userid not in self.corp.contacts[external_userid].follows:
                raise KeyError(f"{external_userid} does not follow {userid}")
        code = self.corp.issue_welcome_code()
        return self.contact_change("msg_audit_approved", userid, external_userid, WelcomeCode=code)

    def customer_adds_another(self, external_userid: str, userid: str) -> Delivery:
        """A customer who follows one member adds a second one."""
        code = self.corp.add_follow(external_userid, userid)
        return self.contact_change("add_external_contact", userid, external_userid, WelcomeCode=code)

    def scan(self, config_id: str) -> tuple[Contact, Delivery]:
        """A customer scans a contact way's QR code: they add one of the members it routes to, with its state."""
        with self.corp.lock:
            way = self.corp.contact_ways.get(config_id)
            if way is None:
                raise KeyError(config_id)
            users = list(way.get("user") or [])
            state = str(way.get("state", ""))
        return self.customer_adds(self.rng.choice(users) if users else None, state)

    def member_tags_customer(self, external_userid: str, userid: str, tag_ids: list[str]) -> Delivery:
        """A member tags a customer in the client: edit_external_contact."""
        with self.corp.lock:
            follow = self.corp.contacts[external_userid].follows[userid]
            follow.tag_ids = list(dict.fromkeys(follow.tag_ids + tag_ids))
        return self.contact_change("edit_external_contact", userid, external_userid)

    def member_records_mobile(self, external_userid: str, userid: str, mobile: str) -> Delivery:
        """A member types the customer's phone number into their remark (remark_mobiles): edit_external_contact."""
        with self.corp.lock:
            follow = self.corp.contacts[external_userid].follows[userid]
            follow.remark_mobiles = list(dict.fromkeys([*follow.remark_mobiles, mobile]))
        return self.contact_change("edit_external_contact", userid, external_userid)

    def member_records_a_phone(self) -> str | None:
        """A member types a customer's phone number into their remark (the brand's orders by that number then
        find the customer); None when every known number is recorded."""
        with self.corp.lock:
            unrecorded = sorted(
                (c.external_userid, userid)
                for c in self.corp.contacts.values()
                if c.mobile and not any(c.mobile in f.remark_mobiles for f in c.follows.values())
                for userid in sorted(c.follows)[:1]
            )
        if not unrecorded:
            return None
        external_userid, userid = self.rng.choice(unrecorded)
        delivery = self.member_records_mobile(external_userid, userid, self.corp.contacts[external_userid].mobile)
        return f"{userid} recorded the phone of {external_userid} ({delivery.statuses})"

    def customer_deletes_member(self, external_userid: str, userid: str) -> Delivery:
        """The customer deletes the member (a loss): del_follow_user. WeCom keeps the relation one-sided."""
        with self.corp.lock:
            self.corp.contacts[external_userid].follows[userid].deleted_by_customer = True
        return self.contact_change("del_follow_user", userid, external_userid)

    def member_deletes_customer(self, external_userid: str, userid: str) -> Delivery:
        """The member deletes the customer: del_external_contact."""
        with self.corp.lock:
            self.corp.contacts[external_userid].follows.pop(userid, None)
        return self.contact_change("del_external_contact", userid, external_userid)

    def takeover_completes(
        self, external_userid: str, handover: str, takeover: str, *, onjob: bool, deletion_first: bool = False
    ) -> list[Delivery]:
        """A handover's 24 hours pass (doc 92125/94081): add_external_contact (no welcome code) for the
        takeover member and, on-job, del_external_contact with Source=DELETE_BY_TRANSFER for the handover
        member — in the order asked, WeCom promises none."""
        take_over(self.corp, external_userid, handover, takeover)

        def added() -> Delivery:
            return self.contact_change("add_external_contact", takeover, external_userid)

        def removed() -> Delivery:
            return self.contact_change("del_external_contact", handover, external_userid, Source="DELETE_BY_TRANSFER")

        if not onjob:
            return [added()]
        return [removed(), added()] if deletion_first else [added(), removed()]

    def transfers_take_effect(
        self, *, refuse: tuple[str, ...] = (), at_limit: tuple[str, ...] = (), until: float | None = None
    ) -> list[Delivery]:
        """The 24 hours of every waiting transfer pass (doc 94082, 94088) — of those due by ``until`` (the
        corp's clock, moved by a test) when given: taken over (1, with the receiver's add_external_contact
        and, on-job, the member's del_external_contact Source=DELETE_BY_TRANSFER), or refused by the
        customer (3) or the receiver at the limit (4), each with a transfer_fail naming the takeover member.
        An on-job customer who refuses stays the member's."""
        deliveries = []
        with self.corp.lock:
            waiting = [
                r
                for r in self.corp.transfers.values()
                if r["status"] == 2 and (until is None or r["takeover_time"] <= until)
            ]
        for r in waiting:
            customer, takeover = r["external_userid"], r["takeover"]
            if customer in refuse or customer in at_limit:
                r["status"] = 3 if customer in refuse else 4
                reason = "customer_refused" if customer in refuse else "customer_limit_exceed"
                deliveries.append(self.contact_change("transfer_fail", takeover, customer, FailReason=reason))
            else:
                r["status"] = 1
                # what WeCom sends the customer on an on-job takeover (transfer_success_msg, or its default)
                r["message_sent"] = r.get("message") or "(WeCom's default text)"
                onjob = r.get("kind") == "onjob"
                deliveries += self.takeover_completes(customer, r["handover"], takeover, onjob=onjob)
        return deliveries

    def member_resigns(self, userid: str) -> Delivery:
        """A member leaves the corp (``bot.sandbox.handover.resign``) and WeCom calls back change_contact
        delete_user (doc 90970)."""
        resign(self.corp, userid)
        return self.deliver(event_xml(self.corp.corp_id, "change_contact", ChangeType="delete_user", UserID=userid))

    def customer_refuses_transfer(self, external_userid: str) -> Delivery | None:
        """The customer refuses the transfer waiting for them within its 24 hours: status 3, transfer_fail
        (customer_refused) naming the takeover member; on-job, they stay the member's customer."""
        record = customer_refuses(self.corp, external_userid)
        if record is None:
            return None
        return self.contact_change(
            "transfer_fail", str(record["takeover"]), external_userid, FailReason="customer_refused"
        )

    def admin_creates_tag(self, group_name: str, tag_name: str) -> Delivery:
        """An admin adds a tag in the WeCom console: change_external_tag/create."""
        result = self.corp.add_tags({"group_name": group_name, "tag": [{"name": tag_name}]})
        tag_id = next(t["id"] for t in result["tag_group"]["tag"] if t["name"] == tag_name)
        return self.deliver(
            event_xml(self.corp.corp_id, "change_external_tag", Id=tag_id, TagType="tag", ChangeType="create")
        )

    # -- customer groups (change_external_chat, WeCom doc 96361) -----------------------------------

    def chat_change(self, chat_id: str, change_type: str, **fields: Any) -> Delivery:
        return self.deliver(
            event_xml(self.corp.corp_id, "change_external_chat", ChatId=chat_id, ChangeType=change_type, **fields)
        )

    def member_creates_group(
        self, owner: str, name: str, customers: list[str] | None = None, members: list[str] | None = None
    ) -> tuple[FakeGroup, Delivery]:
        """A member creates a customer group in the client, with some customers in it: create."""
        group = self.corp.create_group(owner, name, customers, members)
        return group, self.chat_change(group.chat_id, "create")

    def _members_changed(self, chat_id: str, detail: str, userids: list[str], **fields: Any) -> Delivery:
        return self.chat_change(
            chat_id, "update", UpdateDetail=detail, MemChangeCnt=len(userids), MemChangeList=userids, **fields
        )

    def member_invites(self, chat_id: str, external_userid: str, invitor: str | None = None) -> Delivery:
        """A member pulls a customer into the group directly: update/add_member, JoinScene 0."""
        self.corp.join_group(chat_id, external_userid, scene=1, invitor=invitor or "")
        return self._members_changed(chat_id, "add_member", [external_userid], JoinScene=0)

    def customer_scans_join_code(self, config_id: str, external_userid: str) -> tuple[FakeGroup, list[Delivery]]:
        """A customer scans a group-join code: they join one of its groups (WeCom may create a new one when
        all are full): update/add_member with JoinScene 3, after a create for a new group."""
        group, created = self.corp.join_by_code(config_id, external_userid)
        deliveries = [self.chat_change(created.chat_id, "create")] if created else []
        deliveries.append(self._members_changed(group.chat_id, "add_member", [external_userid], JoinScene=3))
        return group, deliveries

    def customer_leaves_group(self, chat_id: str, external_userid: str, *, removed: bool = False) -> Delivery:
        """A customer leaves (or the owner removes them): update/del_member with QuitScene 0 or 1."""
        with self.corp.lock:
            self.corp.groups[chat_id].members.pop(external_userid, None)
        return self._members_changed(chat_id, "del_member", [external_userid], QuitScene=1 if removed else 0)

    def group_renamed(self, chat_id: str, name: str) -> Delivery:
        with self.corp.lock:
            self.corp.groups[chat_id].name = name
        return self.chat_change(chat_id, "update", UpdateDetail="change_name")

    def group_notice_changed(self, chat_id: str, notice: str) -> Delivery:
        with self.corp.lock:
            self.corp.groups[chat_id].notice = notice
        return self.chat_change(chat_id, "update", UpdateDetail="change_notice")

    def group_owner_changed(self, chat_id: str, owner: str) -> Delivery:
        with self.corp.lock:
            self.corp.groups[chat_id].owner = owner
        return self.chat_change(chat_id, "update", UpdateDetail="change_owner")

    def group_dismissed(self, chat_id: str) -> Delivery:
        with self.corp.lock:
            self.corp.groups[chat_id].dismissed = True
        return self.chat_change(chat_id, "dismiss")

    def member_messages_app(self, userid: str, content: str) -> Delivery:
        return self.deliver(
            event_xml(
                self.corp.corp_id,
                "",
                from_user=userid,
                msg_type="text",
                Content=content,
                MsgId=self.rng.randrange(10**15, 10**16),
                AgentID=1000002,
            )
        )

    def _current_relation(self) -> tuple[Contact, str] | None:
        with self.corp.lock:
            pairs = [
                (c, u) for c in self.corp.contacts.values() for u, f in c.follows.items() if not f.deleted_by_customer
            ]
        return self.rng.choice(pairs) if pairs else None

    def act(self, action: str, state: str = "") -> tuple[str, Delivery] | None:
        """One thing happening: ``add`` (a customer scans ``state``), ``tag`` (a member tags a customer) or
        ``delete`` (a customer deletes their member). Returns what happened, or None if nobody could do it."""
        if action == "add":
            way = self.corp.contact_way_for_state(state) if state else None
            contact, delivery = self.scan(way) if way else self.customer_adds(state=state)
            return f"{contact.name} added {next(iter(contact.follows))}", delivery
        relation = self._current_relation()
        if relation is None:
            return None
        contact, userid = relation
        if action == "tag":
            tag = self.rng.choice(sorted(self.corp.tag_index()))
            return f"{userid} tagged {contact.name}", self.member_tags_customer(contact.external_userid, userid, [tag])
        if action == "delete":
            return f"{contact.name} deleted {userid}", self.customer_deletes_member(contact.external_userid, userid)
        raise ValueError(f"unknown action {action!r}")

    def group_activity(self) -> tuple[str, Delivery] | None:
        """A member makes a group with some of their customers, or invites one more customer into one."""
        with self.corp.lock:
            groups = [g for g in self.corp.groups.values() if not g.dismissed]
            relations = [(c.external_userid, u) for c in self.corp.contacts.values() for u in c.follows]
        if not relations:
            return None
        if not groups or self.rng.random() < 0.3:
            owner = self.rng.choice(relations)[1]
            theirs = [e for e, u in relations if u == owner]
            picked = self.rng.sample(theirs, min(len(theirs), self.rng.randint(1, 3)))
            name = self.corp.users[owner]["name"] + self.rng.choice(["的会员群", "的福利群", "的护肤交流群"])
            group, delivery = self.member_creates_group(owner, name, picked)
            return f"{owner} created the group {group.name}", delivery
        group = self.rng.choice(groups)
        outside = [e for e, u in relations if u == group.owner and e not in group.members]
        if not outside:
            return None
        external_userid = self.rng.choice(outside)
        return f"{group.owner} invited a customer into {group.name}", self.member_invites(
            group.chat_id, external_userid
        )

    def member_confirms_a_send(self) -> str | None:
        """A member taps "send" on a mass-send task waiting in their client (WeCom calls nothing back)."""
        with self.corp.lock:
            waiting = sorted(t.msgid for t in self.corp.mass_tasks.values() if not t.confirmed and not t.cancelled)
        if not waiting:
            return None
        task = confirm_mass_task(self.corp, self.rng.choice(waiting))
        return f"{task.sender} sent a mass message to {len(task.recipients)}"

    def moment_activity(self) -> str | None:
        """A member posts a corp moment waiting for them, or a customer reacts to one (``bot.sandbox.moments``)."""
        return someone_posts_or_reacts(self.corp, self.rng)

    def customer_joins_by_code(self) -> tuple[str, Delivery] | None:
        """A customer scans a group-join code and joins one of its groups."""
        with self.corp.lock:
            ways = sorted(self.corp.join_ways)
            if not ways:
                return None
            config_id = self.rng.choice(ways)
            inside = {m for c in self.corp.join_ways[config_id]["chat_id_list"] for m in self.corp.groups[c].members}
            outside = sorted(e for e in self.corp.contacts if e not in inside)
        if not outside:
            return None
        group, deliveries = self.customer_scans_join_code(config_id, self.rng.choice(outside))
        return f"a customer joined {group.name} by its code", deliveries[-1]

    def customer_buys(self) -> str | None:
        """A customer buys and the brand's system tells Siyu's API (``bot.sandbox.purchases``); None without one."""
        if self.brand_api is None:
            return None
        return someone_buys(self.corp, self.rng, self._current_relation(), self.brand_api, self.http, self.timeout)

    def random_activity(self) -> str:
        """One plausible thing happening in the corp; returns what it was, for the log."""
        roll = self.rng.random()
        if roll >= 0.97 and (confirmed := self.member_confirms_a_send()) is not None:
            return confirmed
        if 0.7 <= roll < 0.75 and (moment := self.moment_activity()) is not None:
            return moment
        if roll >= 0.94 and (joined := self.customer_joins_by_code()) is not None:
            what, delivery = joined
            return f"{what} ({delivery.statuses})"
        if roll >= 0.9 and (done := self.group_activity()) is not None:
            what, delivery = done
            return f"{what} ({delivery.statuses})"
        if 0.6 <= roll < 0.65 and (read := someone_reads(self.corp, self.rng, self.timeout)) is not None:
            return read
        if 0.55 <= roll < 0.6 and (bought := self.customer_buys()) is not None:
            return bought
        if roll >= 0.88 and (recorded := self.member_records_a_phone()) is not None:
            return recorded
        action = "add" if roll < 0.65 else "tag" if roll < 0.82 else "delete"
        done = self.act(action, state=self.rng.choice(["", "store-qr", "live-room"])) or self.act("add")
        assert done is not None
        what, delivery = done
        return f"{what} ({delivery.statuses})"
