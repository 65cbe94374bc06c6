"""The sandbox follows WeCom's documented rules, so tests that pass against it mean something."""

import pytest

from bot.sandbox import corp_for
from bot.sandbox.corp import ApiError
from bot.sandbox.members import confirm_mass_task


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(app, clock):
    corp = corp_for(app.config["SIYU"], clock=clock, mass_cap=2, mass_cap_period=86400)
    dep = corp.add_department("门店")
    corp.add_user("u1", "店员", dep)
    return corp


def test_welcome_code_is_single_use(fake):
    _, code = fake.add_contact("客人", 1, "u1")
    fake.send_welcome({"welcome_code": code, "text": {"content": "欢迎"}})
    with pytest.raises(ApiError) as info:
        fake.send_welcome({"welcome_code": code, "text": {"content": "欢迎"}})
    assert info.value.errcode == 41051


def test_welcome_code_lives_20_seconds(fake, clock):
    _, code = fake.add_contact("客人", 1, "u1")
    clock.now += 20.5
    with pytest.raises(ApiError) as info:
        fake.send_welcome({"welcome_code": code, "text": {"content": "欢迎"}})
    assert info.value.errcode == 41050


def test_tokens_expire(fake, clock):
    token = fake.issue_token(fake.corp_id, next(iter(fake.secrets)))["access_token"]
    fake.check_token(token)
    clock.now += fake.token_ttl
    with pytest.raises(ApiError) as info:
        fake.check_token(token)
    assert info.value.errcode == 42001


def test_mass_send_waits_for_the_member_and_respects_the_cap(fake, clock):
    from bot.sandbox.api.mass import add_msg_template

    contact, _ = fake.add_contact("客人", 1, "u1")
    results = []
    for _ in range(3):
        msgid = add_msg_template(
            fake, {"external_userid": [contact.external_userid], "sender": "u1", "text": {"content": "上新"}}
        )["msgid"]
        assert fake.mass_tasks[msgid].results == {}  # nothing is delivered until the member confirms
        results.append(confirm_mass_task(fake, msgid).results[contact.external_userid])
    assert results == [1, 1, 3]  # the third is over the cap of 2 a day
    clock.now += 86401
    msgid = add_msg_template(
        fake, {"external_userid": [contact.external_userid], "sender": "u1", "text": {"content": "上新"}}
    )["msgid"]
    assert confirm_mass_task(fake, msgid).results[contact.external_userid] == 1


def test_the_mass_message_list_names_no_creator_for_api_made_messages(fake, clock):
    """get_groupmsg_list_v2 (获取群发记录列表): creator — "API接口创建的群发消息不返回该字段"; so a creator filter
    finds none of them. Each row carries the message's text and attachments."""
    from bot.sandbox.api.mass import add_msg_template, get_groupmsg_list_v2

    contact, _ = fake.add_contact("客人", 1, "u1")
    link = {"msgtype": "link", "link": {"title": "上新", "url": "https://example.com/new"}}
    body = {"external_userid": [contact.external_userid], "sender": "u1", "text": {"content": "上新"}}
    msgid = add_msg_template(fake, {**body, "attachments": [link]})["msgid"]
    window = {"start_time": int(clock.now) - 60, "end_time": int(clock.now) + 60}
    [row] = get_groupmsg_list_v2(fake, {**window, "chat_type": "single"})["group_msg_list"]
    assert row["msgid"] == msgid and "creator" not in row and row["create_type"] == 0
    assert row["text"] == {"content": "上新"} and row["attachments"] == [link]
    assert get_groupmsg_list_v2(fake, {**window, "creator": "u1"})["group_msg_list"] == []
    assert get_groupmsg_list_v2(fake, {**window, "chat_type": "group"})["group_msg_list"] == []


def test_injected_faults_are_served_then_cleared(fake):
    fake.inject("externalcontact/get", 45009, times=2)
    assert [fake.take_fault("externalcontact/get") for _ in range(3)] == [45009, 45009, None]


def test_an_outage_lasts_its_seconds(fake, monkeypatch):
    import bot.sandbox.corp as corp_module

    now = [1000.0]
    monkeypatch.setattr(corp_module.time, "time", lambda: now[0])
    fake.inject("*", corp_module.TIMEOUT, seconds=60)
    assert [fake.take_fault("externalcontact/get") for _ in range(5)] == [corp_module.TIMEOUT] * 5
    now[0] += 60
    assert fake.take_fault("externalcontact/get") is None and fake.faults == []


def test_a_late_answer_is_carried_out_first(app, corp, sim, monkeypatch):
    """A "late" fault: the call takes effect and its answer comes after TIMEOUT_SECONDS (a lost answer, when the
    caller's timeout is shorter)."""
    import time

    import requests

    import bot.sandbox.api.app as fake_api
    from bot.services.clients import contact_api

    monkeypatch.setattr(fake_api, "TIMEOUT_SECONDS", 0.3)
    base = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")
    fault = {"endpoint": "externalcontact/add_contact_way", "errcode": "late"}
    assert requests.post(base + "sandbox/faults", json=fault, timeout=5).status_code == 200
    with app.app_context():
        started = time.monotonic()
        made = contact_api().add_contact_way({"type": 1, "scene": 2, "user": ["staff0201"], "state": "late"})
    assert time.monotonic() - started >= 0.3
    assert corp.contact_ways[made["config_id"]]["state"] == "late"


def test_fault_control_endpoint_over_http(app, corp):
    import requests

    base = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")
    assert requests.post(base + "sandbox/faults", json={"endpoint": "user/list"}, timeout=5).status_code == 400
    assert (
        requests.post(base + "sandbox/faults", json={"endpoint": "user/list", "errcode": -1}, timeout=5).status_code
        == 200
    )
    assert corp.take_fault("user/list") == -1
    outage = {"endpoint": "*", "errcode": "timeout", "seconds": 30}
    assert requests.post(base + "sandbox/faults", json=outage, timeout=5).status_code == 200
    assert corp.take_fault("user/list") == corp.take_fault("externalcontact/get") < 0
