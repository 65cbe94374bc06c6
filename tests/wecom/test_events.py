import pytest

from bot.sandbox.simulator import event_xml
from bot.wecom.errors import MalformedCallback
from bot.wecom.events import (
    AppTextMessage,
    EnterAgentEvent,
    ExternalChatEvent,
    ExternalContactEvent,
    ExternalTagEvent,
    MemberEvent,
    UnknownEvent,
    parse_event,
)

CORP = "ww1436e0e65a779aee"


@pytest.mark.parametrize(
    ("fields", "cls", "expected"),
    [
        (
            dict(
                ChangeType="add_external_contact",
                UserID="zhangsan",
                ExternalUserID="wmA",
                State="store-1",
                WelcomeCode="WC",
            ),
            ExternalContactEvent,
            dict(
                kind="change_external_contact.add_external_contact",
                user_id="zhangsan",
                external_user_id="wmA",
                state="store-1",
                welcome_code="WC",
            ),
        ),
        (
            dict(ChangeType="add_half_external_contact", UserID="u", ExternalUserID="wmB"),
            ExternalContactEvent,
            dict(change_type="add_half_external_contact", welcome_code=""),
        ),
        (
            dict(ChangeType="msg_audit_approved", UserID="u", ExternalUserID="wmG", WelcomeCode="WC2"),
            ExternalContactEvent,
            dict(kind="change_external_contact.msg_audit_approved", welcome_code="WC2", state=""),
        ),
        (
            dict(ChangeType="edit_external_contact", UserID="u", ExternalUserID="wmC"),
            ExternalContactEvent,
            dict(change_type="edit_external_contact"),
        ),
        (
            dict(ChangeType="del_external_contact", UserID="u", ExternalUserID="wmD", Source="DELETE_BY_TRANSFER"),
            ExternalContactEvent,
            dict(source="DELETE_BY_TRANSFER"),
        ),
        (
            dict(ChangeType="del_follow_user", UserID="u", ExternalUserID="wmE"),
            ExternalContactEvent,
            dict(change_type="del_follow_user"),
        ),
        (
            dict(ChangeType="transfer_fail", UserID="u", ExternalUserID="wmF", FailReason="customer_refused"),
            ExternalContactEvent,
            dict(fail_reason="customer_refused"),
        ),
    ],
)
def test_contact_events(fields, cls, expected):
    event = parse_event(event_xml(CORP, "change_external_contact", 1403610513, **fields))
    assert isinstance(event, cls)
    assert event.from_user == "sys" and event.create_time == 1403610513 and event.to_user == CORP
    for name, value in expected.items():
        assert getattr(event, name) == value


@pytest.mark.parametrize(
    ("change", "tag_type", "id_", "strategy"),
    [
        ("create", "tag", "et1", ""),
        ("update", "tag_group", "etg", ""),
        ("delete", "tag_group", "etg", ""),
        ("shuffle", "", "", ""),
        ("shuffle", "", "etg", "7"),
        ("create", "tag", "et2", "1"),
    ],
)
def test_tag_events(change, tag_type, id_, strategy):
    fields = {"Id": id_, "ChangeType": change}
    if tag_type:
        fields["TagType"] = tag_type
    if strategy:
        fields["StrategyId"] = int(strategy)
    event = parse_event(event_xml(CORP, "change_external_tag", **fields))
    assert isinstance(event, ExternalTagEvent)
    assert (event.change_type, event.tag_type, event.id, event.strategy_id) == (change, tag_type, id_, strategy)
    assert event.kind == f"change_external_tag.{change}"


def test_chat_update_with_member_list():
    event = parse_event(
        event_xml(
            CORP,
            "change_external_chat",
            ChatId="wrx7",
            ChangeType="update",
            UpdateDetail="add_member",
            JoinScene=3,
            QuitScene=0,
            MemChangeCnt=2,
            MemChangeList=["Jack", "Rose"],
            LastMemVer="a",
            CurMemVer="b",
        )
    )
    assert isinstance(event, ExternalChatEvent)
    assert event.chat_id == "wrx7" and event.update_detail == "add_member" and event.join_scene == 3
    assert event.mem_change_list == ("Jack", "Rose") and event.mem_change_cnt == 2
    assert (event.last_mem_ver, event.cur_mem_ver) == ("a", "b")


@pytest.mark.parametrize("change", ["create", "dismiss"])
def test_chat_create_and_dismiss(change):
    event = parse_event(event_xml(CORP, "change_external_chat", ChatId="wr1", ChangeType=change))
    assert isinstance(event, ExternalChatEvent) and event.change_type == change and event.mem_change_list == ()


def test_staff_text_and_enter_agent():
    text = parse_event(
        event_xml(
            CORP, "", from_user="lisi", msg_type="text", Content="我的二维码", MsgId=1234567890123456, AgentID=1000002
        )
    )
    assert isinstance(text, AppTextMessage)
    assert (text.kind, text.from_user, text.content, text.msg_id) == ("text", "lisi", "我的二维码", "1234567890123456")
    enter = parse_event(event_xml(CORP, "enter_agent", from_user="lisi", EventKey="", AgentID=1))
    assert isinstance(enter, EnterAgentEvent) and enter.agent_id == "1"


@pytest.mark.parametrize("change", ["create_user", "update_user", "delete_user"])
def test_member_changes(change):
    """change_contact for a member (doc 90970): a member leaving is delete_user."""
    event = parse_event(event_xml(CORP, "change_contact", ChangeType=change, UserID="zhangsan"))
    assert isinstance(event, MemberEvent)
    assert (event.kind, event.change_type, event.user_id) == (f"change_contact.{change}", change, "zhangsan")


@pytest.mark.parametrize(
    ("event", "fields", "kind"),
    [
        ("change_external_contact", {"ChangeType": "something_new"}, "change_external_contact.something_new"),
        ("batch_job_result", {}, "batch_job_result"),
        ("", {}, "event"),
    ],
)
def test_unknown_types_parse_as_unknown(event, fields, kind):
    parsed = parse_event(
        event_xml(CORP, event, **fields).replace(
            "<MsgType><![CDATA[event]]></MsgType>", "<MsgType><![CDATA[event]]></MsgType>"
        )
    )
    assert isinstance(parsed, UnknownEvent)
    assert parsed.kind == (kind if event else "unknown")


XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>&xxe;</ToUserName></xml>"
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]><xml><a>&lol9;</a></xml>"
)


@pytest.mark.parametrize(
    "payload",
    [
        "<xml><unclosed></xml>",
        "not xml",
        "",
        "<other/>",
        XXE,
        LAUGHS,
        "<xml>" + "<a/>" * 5000 + "</xml>",
        "<xml><CreateTime>soon</CreateTime></xml>",
    ],
    ids=["unclosed", "text", "empty", "wrong-root", "xxe", "billion-laughs", "too-many-elements", "bad-time"],
)
def test_hostile_or_broken_xml_is_malformed(payload):
    with pytest.raises(MalformedCallback):
        parse_event(payload)
