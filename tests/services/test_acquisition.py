"""Channel codes and welcome messages, end to end: API → fake WeCom → a scan as a real callback → worker."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db, redis_conn
from bot.jobs.queue import WELCOME_LIST
from bot.models import CallbackEvent, Channel, CustomerEvent, FollowRelation, WelcomeSend, WelcomeStatus
from bot.models._time import utcnow
from bot.services.channels import welcome
from tests.conftest import make_token, make_user


def vip_tag(corp):
    return next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")


def new_channel(api, corp, **extra):
    body = {
        "name": "静安门店海报",
        "staff": ["staff0201"],
        "state": "jingan-poster",
        "tag_ids": [vip_tag(corp)],
        "welcome": [{"text": "{customer_name}您好，我是{store_name}的{staff_name}，欢迎！"}],
        **extra,
    }
    res = api.post("/api/v1/channels", body)
    assert res.status_code == 201, res.get_json()
    return res.get_json()


def follow_of(app, external_userid):
    with app.app_context():
        follow = db.session.scalar(
            select(FollowRelation)
            .join(FollowRelation.customer)
            .where(FollowRelation.customer.has(external_userid=external_userid))
        )
        _ = follow.tags
        return follow


def test_a_channel_is_a_wecom_contact_way(api, corp):
    channel = new_channel(api, corp)
    way = corp.contact_ways[channel["config_id"]]
    assert way["state"] == "jingan-poster" and way["user"] == ["staff0201"] and way["type"] == 1
    assert channel["qr_code"].endswith(".png")
    assert (channel["stats"]["added"], channel["stats"]["lost"], channel["stats"]["retention_7d"]) == (0, 0, None)
    assert [c["state"] for c in api.get("/api/v1/channels").get_json()["items"]] == ["jingan-poster"]


def test_a_scan_is_welcomed_attributed_and_tagged(app, api, sim, corp, run_worker):
    channel = new_channel(api, corp)
    contact, delivery = sim.customer_adds(userid="staff0201", state="jingan-poster")
    assert delivery.statuses == [200]
    run_worker()
    [sent] = corp.welcomes_sent
    staff_name = corp.users["staff0201"]["name"]
    assert sent["text"]["content"] == f"{contact.name}您好，我是静安寺店的{staff_name}，欢迎！"
    follow = follow_of(app, contact.external_userid)
    assert follow.channel_id == channel["id"] and follow.welcome_variant_id == channel["welcome"][0]["id"]
    assert [t.tag_name for t in follow.tags] == ["VIP"]  # in the mirror…
    assert corp.contacts[contact.external_userid].follows["staff0201"].tag_ids == [vip_tag(corp)]  # …and in WeCom
    with app.app_context():
        record = db.session.scalar(select(WelcomeSend))
        assert record.status == WelcomeStatus.sent and record.attempts == 1 and record.sent_at is not None
        assert "welcome_sent" in set(db.session.scalars(select(CustomerEvent.kind)))
    stats = api.get(f"/api/v1/channels/{channel['id']}").get_json()["stats"]
    assert (stats["added"], stats["lost"], stats["net"]) == (1, 0, 1)
    assert [(v["name"], v["added"]) for v in stats["variants"]] == [("A", 1)]


def test_one_welcome_per_code_however_often_and_concurrently_it_is_handled(app, api, sim, corp):
    channel_id = new_channel(api, corp)["id"]
    contact, code = corp.add_contact("客人", 1, "staff0201", "jingan-poster")
    results = []

    def send():
        with app.app_context():
            results.append(
                welcome.send_welcome(code, contact.external_userid, "staff0201", db.session.get(Channel, channel_id))[0]
            )

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(corp.welcomes_sent) == 1
    assert results.count(WelcomeStatus.sent) >= 1
    assert set(results) <= {WelcomeStatus.sent, WelcomeStatus.already_sent}


@pytest.mark.parametrize(("errcode", "status"), [(41051, WelcomeStatus.already_sent), (41050, WelcomeStatus.expired)])
def test_final_welcome_refusals_are_recorded_not_retried(app, api, sim, corp, run_worker, errcode, status):
    new_channel(api, corp)
    corp.inject("externalcontact/send_welcome_msg", errcode, times=5)
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    with app.app_context():
        record = db.session.scalar(select(WelcomeSend))
        assert record.status == status and record.errcode == errcode and record.attempts == 1
    assert corp.calls.count("externalcontact/send_welcome_msg") == 1
    assert follow_of(app, contact.external_userid).channel_id is not None  # the customer is still attributed


def test_41096_is_retried_within_the_codes_life(app, api, sim, corp, run_worker):
    new_channel(api, corp)
    corp.inject("externalcontact/send_welcome_msg", 41096, times=2)
    sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    assert len(corp.welcomes_sent) == 1
    assert corp.calls.count("externalcontact/send_welcome_msg") == 3


def test_an_expired_code_is_recorded(app, api, sim, corp, run_worker):
    new_channel(api, corp)
    corp.welcome_ttl = -1  # every code is already past its 20 s
    sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    with app.app_context():
        assert db.session.scalar(select(WelcomeSend.status)) == WelcomeStatus.expired


def test_unknown_state_is_no_channel_and_never_dropped(app, api, sim, corp, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201", state="someone-elses-code")
    run_worker()
    follow = follow_of(app, contact.external_userid)
    assert follow.channel_id is None and follow.state == "someone-elses-code"
    with app.app_context():
        assert db.session.scalar(select(WelcomeSend.status)) == WelcomeStatus.no_message
    assert corp.welcomes_sent == []


def test_a_deleted_channels_late_scan_is_attributed_but_not_welcomed(app, api, sim, corp, run_worker):
    channel = new_channel(api, corp)
    assert api.delete(f"/api/v1/channels/{channel['id']}").status_code == 200
    assert channel["config_id"] not in corp.contact_ways
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    assert follow_of(app, contact.external_userid).channel_id == channel["id"]
    assert corp.welcomes_sent == []


def test_no_welcome_code_means_wecom_sent_one(app, api, sim, corp, run_worker):
    new_channel(api, corp)
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster", welcome=False)
    run_worker()
    assert corp.welcomes_sent == []
    with app.app_context():
        assert db.session.scalar(select(WelcomeSend)) is None
        assert "welcome_by_wecom" in set(db.session.scalars(select(CustomerEvent.kind)))


def test_welcome_variants_follow_their_weights(app, api, sim, corp, run_worker):
    channel = new_channel(
        api, corp, welcome=[{"label": "A", "text": "甲", "weight": 1}, {"label": "B", "text": "乙", "weight": 1000}]
    )
    for _ in range(5):
        sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    texts = [w["text"]["content"] for w in corp.welcomes_sent]
    assert len(texts) == 5 and texts.count("乙") >= 4
    b = next(w["id"] for w in channel["welcome"] if w["label"] == "B")
    with app.app_context():
        variants = list(db.session.scalars(select(FollowRelation.welcome_variant_id)))
    assert variants.count(b) == texts.count("乙")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"staff": []}, "staff"),
        ({"state": "x" * 31}, "state"),
        ({"name": ""}, "name"),
        ({"tag_ids": ["no-such-tag"]}, "tag_ids"),
        ({"welcome": [{"text": ""}]}, "welcome"),
        ({"welcome": [{"text": "x", "attachments": [{}] * 10}]}, "welcome"),
    ],
)
def test_bad_channel_requests_are_400_with_the_field(api, corp, body, field):
    base = {"name": "n", "staff": ["staff0201"], "state": "ok-state"}
    res = api.post("/api/v1/channels", {**base, **body})
    assert res.status_code == 400 and res.get_json()["error"]["message"].startswith(field)
    assert corp.contact_ways == {}  # nothing was made in WeCom


def test_a_state_is_used_once(api, corp):
    new_channel(api, corp)
    res = api.post("/api/v1/channels", {"name": "again", "staff": ["staff0201"], "state": "jingan-poster"})
    assert res.status_code == 400 and "state" in res.get_json()["error"]["message"]


def test_viewers_cannot_change_channels_and_store_managers_see_their_own(app, api, corp, client):
    channel = new_channel(api, corp)
    viewer = {"Authorization": f"Bearer {make_token(app, make_user(app, 'v', 'viewer')[0])}"}
    assert client.post("/api/v1/channels", json={"name": "x"}, headers=viewer).status_code == 403
    other = {"Authorization": f"Bearer {make_token(app, make_user(app, 'm3', 'store_manager', [3])[0])}"}
    assert client.get("/api/v1/channels", headers=other).get_json()["items"] == []
    assert client.get(f"/api/v1/channels/{channel['id']}", headers=other).status_code == 404
    mine = {"Authorization": f"Bearer {make_token(app, make_user(app, 'm2', 'store_manager', [2])[0])}"}
    assert [c["id"] for c in client.get("/api/v1/channels", headers=mine).get_json()["items"]] == [channel["id"]]


def test_wecom_refusal_is_502_and_leaves_nothing(app, api, corp):
    corp.inject("externalcontact/add_contact_way", 41045)  # contact-way quota reached
    res = api.post("/api/v1/channels", {"name": "n", "staff": ["staff0201"], "state": "s1"})
    assert res.status_code == 502 and "41045" in res.get_json()["error"]["message"]
    with app.app_context():
        assert db.session.scalar(select(Channel)) is None


def test_an_unknown_member_is_the_callers_mistake_and_a_code_gone_from_wecom_still_deletes(app, api, corp):
    res = api.post("/api/v1/channels", {"name": "n", "staff": ["nobody-here"], "state": "s2"})
    assert res.status_code == 400 and res.get_json()["error"]["message"].startswith("staff: ")
    channel = new_channel(api, corp)
    del corp.contact_ways[channel["config_id"]]  # removed in WeCom's console, say
    assert api.delete(f"/api/v1/channels/{channel['id']}").status_code == 200
    with app.app_context():
        assert db.session.get(Channel, channel["id"]).active is False


def test_the_profile_shows_the_channel_and_the_welcome(app, api, sim, corp, run_worker):
    from tests.admin.panel import sign_in

    new_channel(api, corp)
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    browser = app.test_client()
    _, password = make_user(app, "boss", "admin")
    sign_in(browser, "boss", password)
    page = browser.get(f"/admin/customers/{contact.external_userid}").get_data(as_text=True)
    assert "静安门店海报" in page and "已发送欢迎语" in page


def test_a_loss_alerts_the_member_once(app, api, sim, corp, run_worker):
    from bot.sandbox.simulator import event_xml

    contact, _ = sim.customer_adds(userid="staff0201")
    sim.customer_deletes_member(contact.external_userid, "staff0201")
    run_worker()
    [alert] = corp.app_messages
    assert alert["touser"] == "staff0201" and contact.name in alert["text"]["content"]
    assert alert["text"]["content"].startswith("流失提醒")
    # WeCom reports the same loss again (another CreateTime, so another event): no second alert.
    sim.deliver(
        event_xml(
            corp.corp_id,
            "change_external_contact",
            1700000001,
            ChangeType="del_follow_user",
            UserID="staff0201",
            ExternalUserID=contact.external_userid,
        )
    )
    run_worker()
    assert len(corp.app_messages) == 1
    assert follow_of(app, contact.external_userid).status.value == "deleted_by_customer"


def test_channels_in_the_panel(app, api, sim, corp):
    from tests.admin.panel import post_form, sign_in

    browser = app.test_client()
    _, password = make_user(app, "boss", "admin")
    sign_in(browser, "boss", password)
    assert "还没有渠道活码" in browser.get("/admin/channels").get_data(as_text=True)
    form = {
        "name": "直播间",
        "staff": ["staff0201", "staff0301"],
        "state": "live-1",
        "tag_ids": [vip_tag(corp)],
        "skip_verify": "y",
        "welcome": "欢迎{customer_name}",
    }
    assert post_form(browser, "/admin/channels", "/admin/channels", form).status_code == 302
    [way] = corp.contact_ways.values()
    assert way["state"] == "live-1" and way["type"] == 2 and sorted(way["user"]) == ["staff0201", "staff0301"]
    again = post_form(browser, "/admin/channels", "/admin/channels", {**form, "name": "另一个"})
    assert again.status_code == 400 and "state 已被其他渠道使用" in again.get_data(as_text=True)
    nobody = post_form(browser, "/admin/channels", "/admin/channels", {"name": "空", "state": "empty-1"})
    assert nobody.status_code == 400 and "至少选择一名员工" in nobody.get_data(as_text=True)
    with app.app_context():
        channel_id = db.session.scalar(select(Channel.id))
    assert post_form(browser, "/admin/channels", f"/admin/channels/{channel_id}/delete", {}).status_code == 302
    assert corp.contact_ways == {} and "已删除" in browser.get("/admin/channels").get_data(as_text=True)
    viewer = app.test_client()
    sign_in(viewer, "v", make_user(app, "v", "viewer")[1])
    assert "新建渠道活码" not in viewer.get("/admin/channels").get_data(as_text=True)
    assert post_form(viewer, "/admin/channels", "/admin/channels", form).status_code == 403


def test_a_welcome_batch_that_fails_is_tried_again_on_the_fast_path(app, api, sim, corp, run_worker, monkeypatch):
    """A database restart under the welcome worker: the batch is tried again at once, not left to the
    sweeper's minute (past the code's 20 s)."""
    from sqlalchemy.exc import OperationalError

    from bot.services.channels import jobs as tasks

    new_channel(api, corp)
    real, calls = tasks._welcome_batch, []

    def flaky(event_ids):
        calls.append(list(event_ids))
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("the database system is shutting down"))
        return real(event_ids)

    monkeypatch.setattr(tasks, "_welcome_batch", flaky)
    monkeypatch.setattr(tasks, "WELCOME_RETRIES", (0.0,))
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    assert len(calls) == 2 and calls[0] == calls[1]
    assert len(corp.welcomes_sent) == 1 and list(corp.welcome_attempts.values()) == [1]
    assert contact.external_userid in corp.contacts
    with app.app_context():
        assert db.session.scalar(select(WelcomeSend.status)) == WelcomeStatus.sent


def _kinds(app):
    with app.app_context():
        return [k for k in db.session.scalars(select(CustomerEvent.kind).order_by(CustomerEvent.id))]


def test_a_customer_agreeing_to_chat_archiving_is_welcomed_by_the_channel_of_their_add(app, api, sim, corp, run_worker):
    """会话存档: the add comes without a welcome code; msg_audit_approved brings the one to welcome with, and the
    welcome is the channel's that the relation's state names (the event itself has no State)."""
    channel = new_channel(api, corp)
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster", welcome=False)
    run_worker()
    assert corp.welcomes_sent == []
    delivery = sim.customer_approves_archiving(contact.external_userid, "staff0201")
    assert delivery.statuses == [200]
    with app.app_context():
        event = db.session.scalar(select(CallbackEvent).order_by(CallbackEvent.id.desc()))
        assert event.kind == "change_external_contact.msg_audit_approved"
        assert welcome.stranded(event.received_at + timedelta(seconds=5), set()) == [event.id]  # a welcome kind
    app.extensions["siyu.inbox"].settle()
    assert redis_conn.client.lrange(WELCOME_LIST, 0, -1) == [str(event.id).encode()]  # on the fast path
    run_worker()
    [sent] = corp.welcomes_sent
    staff_name = corp.users["staff0201"]["name"]
    assert sent["text"]["content"] == f"{contact.name}您好，我是静安寺店的{staff_name}，欢迎！"
    follow = follow_of(app, contact.external_userid)
    assert follow.channel_id == channel["id"] and follow.welcome_variant_id == channel["welcome"][0]["id"]
    with app.app_context():
        record = db.session.scalar(select(WelcomeSend))
        assert record.status == WelcomeStatus.sent and record.attempts == 1 and record.channel_id == channel["id"]
        assert db.session.scalar(select(CallbackEvent.status).where(CallbackEvent.id == event.id)) == "done"
    assert {"archiving_approved", "welcome_sent"} <= set(_kinds(app))
    # WeCom re-sending the approval (or a second worker) does not welcome twice
    sim.deliver(event.plaintext)
    run_worker()
    assert len(corp.welcomes_sent) == 1 and list(corp.welcome_attempts.values()) == [1]


def test_an_approval_arriving_before_its_add_still_welcomes_by_the_state_wecom_lists(app, api, sim, corp, run_worker):
    """The approval may be processed before the add (it is on the welcome fast path, the add without a code
    is not): the relation's state is read from WeCom, as an add reads the customer, within the code's 20 s."""
    channel = new_channel(api, corp)
    contact, _ = corp.add_contact("早到的客人", 2, "staff0201", "jingan-poster")  # its add not delivered yet
    assert sim.customer_approves_archiving(contact.external_userid, "staff0201").statuses == [200]
    run_worker()
    [sent] = corp.welcomes_sent
    assert sent["text"]["content"].startswith("早到的客人您好")
    follow = follow_of(app, contact.external_userid)
    assert follow.state == "jingan-poster" and follow.channel_id == channel["id"]
    # the add, processed afterwards, neither welcomes again nor loses the attribution
    sim.contact_change("add_external_contact", "staff0201", contact.external_userid, State="jingan-poster")
    run_worker()
    assert len(corp.welcomes_sent) == 1
    follow = follow_of(app, contact.external_userid)
    assert follow.channel_id == channel["id"] and follow.welcome_variant_id == channel["welcome"][0]["id"]
    assert [t.tag_name for t in follow.tags] == ["VIP"]


def test_an_approval_whose_customer_wecom_cannot_read_yet_is_retried_not_dropped(app, api, sim, corp, run_worker):
    """WeCom failing to list the relation leaves the code unclaimed (never spent as "no channel"): the event is
    retried, 10 s later, while the code lives."""
    from bot.services.callbacks.jobs import requeue_due_events

    new_channel(api, corp)
    contact, _ = corp.add_contact("客人", 2, "staff0201", "jingan-poster")
    # WeCom busy (each call tried 4 times by the client): the fast path and the first processing fail
    corp.inject("externalcontact/get", -1, times=8)
    sim.customer_approves_archiving(contact.external_userid, "staff0201")
    run_worker()
    assert corp.welcomes_sent == []
    with app.app_context():
        event = db.session.scalar(select(CallbackEvent).order_by(CallbackEvent.id.desc()))
        assert event.status == "failed" and event.attempts == 1
        assert db.session.scalar(select(WelcomeSend)) is None
        event.next_attempt_at = utcnow()
        db.session.commit()
        assert requeue_due_events() == 1
    run_worker()
    [sent] = corp.welcomes_sent
    assert sent["text"]["content"].startswith("客人您好")
