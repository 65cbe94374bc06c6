"""Typed callback events (WeCom doc 92005, 96361, 96467).

wechatpy 1.8.18 turns every change_external_* event into ``UnknownMessage``; these classes cover each
change type Siyu acts on, and anything else parses as ``UnknownEvent`` so it is stored, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

from bot.wecom.errors import MalformedCallback
from bot.wecom.xml import parse_xml


@dataclass(frozen=True)
class Event:
    kind: str  # "<Event or MsgType>" or "<Event>.<ChangeType>", e.g. "change_external_contact.add_external_contact"
    to_user: str
    from_user: str
    create_time: int
    msg_type: str


@dataclass(frozen=True)
class ExternalContactEvent(Event):
    change_type: str
    user_id: str
    external_user_id: str
    state: str = ""
    welcome_code: str = ""  # add_*_external_contact, msg_audit_approved
    source: str = ""  # del_external_contact: DELETE_BY_TRANSFER when removed by 在职继承
    fail_reason: str = ""  # transfer_fail: customer_refused | customer_limit_exceed


@dataclass(frozen=True)
class ExternalTagEvent(Event):
    change_type: str  # create | update | delete | shuffle
    id: str  # tag or group id; for shuffle, empty means every group was reordered
    tag_type: str = ""  # tag | tag_group (absent for shuffle)
    strategy_id: str = ""  # present for rule-group (规则组) tags


@dataclass(frozen=True)
class ExternalChatEvent(Event):
    change_type: str  # create | update | dismiss
    chat_id: str
    update_detail: str = ""
    join_scene: int | None = None
    quit_scene: int | None = None
    mem_change_cnt: int | None = None
    mem_change_list: tuple[str, ...] = field(default_factory=tuple)
    last_mem_ver: str = ""
    cur_mem_ver: str = ""


@dataclass(frozen=True)
class AppTextMessage(Event):
    content: str
    msg_id: str
    agent_id: str


@dataclass(frozen=True)
class EnterAgentEvent(Event):
    agent_id: str
    event_key: str = ""


@dataclass(frozen=True)
class MemberEvent(Event):
    """change_contact for a member (doc 90970): create_user / update_user / delete_user."""

    change_type: str
    user_id: str


@dataclass(frozen=True)
class UnknownEvent(Event):
    pass


CONTACT_CHANGES = frozenset(
    {
        "add_external_contact",
        "edit_external_contact",
        "add_half_external_contact",
        "del_external_contact",
        "del_follow_user",
        "transfer_fail",
        # the customer agreed to chat archiving (会话存档); its WelcomeCode is the one to welcome them with
        "msg_audit_approved",
    }
)
TAG_CHANGES = frozenset({"create", "update", "delete", "shuffle"})
CHAT_CHANGES = frozenset({"create", "update", "dismiss"})
MEMBER_CHANGES = frozenset({"create_user", "update_user", "delete_user"})


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def event_kind(fields: dict[str, str]) -> str:
    msg_type = fields.get("MsgType", "")
    if msg_type != "event":
        return msg_type or "unknown"
    event = fields.get("Event", "") or "unknown"
    change = fields.get("ChangeType", "")
    return f"{event}.{change}" if change else event


def parse_event(plaintext: str | bytes) -> Event:
    root = parse_xml(plaintext)
    return event_from_element(root)


def event_from_element(root: Element) -> Event:
    fields = {child.tag: (child.text or "").strip() for child in root}
    try:
        create_time = int(fields.get("CreateTime", "0") or 0)
    except ValueError as exc:
        raise MalformedCallback("CreateTime is not a number") from exc
    head: dict[str, Any] = dict(
        kind=event_kind(fields),
        to_user=fields.get("ToUserName", ""),
        from_user=fields.get("FromUserName", ""),
        create_time=create_time,
        msg_type=fields.get("MsgType", ""),
    )
    event = fields.get("Event", "")
    change = fields.get("ChangeType", "")
    if event == "change_external_contact" and change in CONTACT_CHANGES:
        return ExternalContactEvent(
            **head,
            change_type=change,
            user_id=fields.get("UserID", ""),
            external_user_id=fields.get("ExternalUserID", ""),
            state=fields.get("State", ""),
            welcome_code=fields.get("WelcomeCode", ""),
            source=fields.get("Source", ""),
            fail_reason=fields.get("FailReason", ""),
        )
    if event == "change_external_tag" and change in TAG_CHANGES:
        return ExternalTagEvent(
            **head,
            change_type=change,
            id=fields.get("Id", ""),
            tag_type=fields.get("TagType", ""),
            strategy_id=fields.get("StrategyId", ""),
        )
    if event == "change_external_chat" and change in CHAT_CHANGES:
        members = root.find("MemChangeList")
        items = tuple((i.text or "").strip() for i in members.iter("Item")) if members is not None else ()
        return ExternalChatEvent(
            **head,
            change_type=change,
            chat_id=fields.get("ChatId", ""),
            update_detail=fields.get("UpdateDetail", ""),
            join_scene=_int_or_none(fields.get("JoinScene", "")),
            quit_scene=_int_or_none(fields.get("QuitScene", "")),
            mem_change_cnt=_int_or_none(fields.get("MemChangeCnt", "")),
            mem_change_list=items,
            last_mem_ver=fields.get("LastMemVer", ""),
            cur_mem_ver=fields.get("CurMemVer", ""),
        )
    if event == "change_contact" and change in MEMBER_CHANGES:
        return MemberEvent(**head, change_type=change, user_id=fields.get("UserID", ""))
    if head["msg_type"] == "text":
        return AppTextMessage(
            **head,
            content=fields.get("Content", ""),
            msg_id=fields.get("MsgId", ""),
            agent_id=fields.get("AgentID", ""),
        )
    if event == "enter_agent":
        return EnterAgentEvent(**head, agent_id=fields.get("AgentID", ""), event_key=fields.get("EventKey", ""))
    return UnknownEvent(**head)
