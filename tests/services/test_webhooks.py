"""Webhooks out, end to end: real signed WeCom callbacks (and API calls) make events, the outbox records them
in the same transaction, the sender posts them signed to real HTTP receivers on loopback, which verify."""

import time
from datetime import timedelta
from pathlib import Path

import time_machine
from sqlalchemy import event, func, select

from bot.extensions import db
from bot.models import (
    AuditEntry,
    DeliveryStatus,
    LifecycleTask,
    MassSend,
    Staff,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from bot.models._time import utcnow
from bot.sandbox.members import confirm_mass_task
from bot.services.customers import fields as custom_fields
from bot.services.customers.relations import find_customer, update_profile
from bot.services.handover import handovers
from bot.services.handover import jobs as handover_jobs
from bot.services.sends import jobs as send_jobs
from bot.services.signals import announce
from bot.services.webhooks import endpoints, jobs, sending
from bot.services.webhooks.events import BY_NAME
from bot.services.workspace import actions
from tests.conftest import customers_of
from tests.services.lifecycle_helpers import BIRTHDAY, make_rule, run_now, set_customer, soon
from tests.services.test_handover import leaver  # noqa: F401 - a fixture
from tests.services.webhook_helpers import receiving, register, unpause


def data_of(receiver, event_type):
    """The payloads of one type, each checked against the model the OpenAPI document publishes for it."""
    payloads = [r.body["data"] for r in receiver.of_type(event_type)]
    for data in payloads:
        BY_NAME[event_type].data.model_validate(data, strict=True)
    return payloads


def test_a_customers_events_arrive_signed_and_in_the_order_they_happened(app, sim, corp, run_worker):
    with receiving() as crm:
        register(app, crm)
        a, b = (c.external_userid for c in customers_of(app, sim, run_worker, ["staff0202"], each=2))
        tag_id = next(iter(corp.tag_index()))
        with sim.corp.lock:  # one edit in the client: a remark and a tag (one callback)
            sim.corp.contacts[a].follows["staff0202"].remark = "张三 VIP"
        sim.member_tags_customer(a, "staff0202", [tag_id])
        run_worker()
        with app.app_context():
            update_profile(find_customer(a), birthday=soon(5), notes="喜欢拿铁", staff_userid="staff0202")
            custom_fields.define_field("肤质", "choice", "members", ["干性", "油性"])
            wanted = custom_fields.read_values({"肤质": "油性"}, custom_fields.Editor.member)
            custom_fields.set_values(find_customer(a), wanted, by="member:staff0202", staff_userid="staff0202")
            db.session.commit()
        sim.member_deletes_customer(a, "staff0202")
        sim.customer_deletes_member(b, "staff0202")
        run_worker()

    assert all(r.signed for r in crm.received) and crm.received
    assert len(set(crm.ids())) == len(crm.ids())  # one delivery per event here
    added = data_of(crm, "customer.added")
    assert sorted(d["customer"]["external_userid"] for d in added) == sorted([a, b])
    assert all(d["member"] == {"userid": "staff0202"} and d["confirmed"] for d in added)
    (tags,) = data_of(crm, "customer.tags_changed")
    assert [t["id"] for t in tags["added"]] == [tag_id] and tags["removed"] == []
    assert tags["added"][0]["name"] == corp.tag_index()[tag_id][1]
    changes = data_of(crm, "customer.profile_changed")
    assert [d["fields"] for d in changes] == [["remark"], ["birthday", "notes"], ["肤质"]]
    assert changes[2]["values"] == {"肤质": "油性"} and changes[2]["member"] == {"userid": "staff0202"}
    lost = {d["customer"]["external_userid"]: d["side"] for d in data_of(crm, "customer.lost")}
    assert lost == {a: "member", b: "customer"}
    # one customer's events, in the order they happened
    of_a = [r.type for r in crm.received if r.body["data"].get("customer", {}).get("external_userid") == a]
    assert of_a == [
        "customer.added",
        "customer.profile_changed",
        "customer.tags_changed",
        "customer.profile_changed",
        "customer.profile_changed",
        "customer.lost",
    ]
    envelope = crm.received[0].body
    assert envelope["id"].startswith("evt_") and envelope["occurred_at"].endswith("Z")


def test_transfers_groups_sends_and_tasks_are_told(app, sim, corp, run_worker, admin_api):
    with receiving() as crm:
        register(app, crm)
        a, b = (c.external_userid for c in customers_of(app, sim, run_worker, ["staff0202"], each=2))
        # a transfer (在职继承 completing): not an add, nor a loss
        sim.takeover_completes(b, "staff0202", "staff0203", onjob=True, deletion_first=True)
        group, _ = sim.member_creates_group("staff0202", "会员群", [a])
        run_worker()
        sim.member_invites(group.chat_id, b)
        sim.customer_leaves_group(group.chat_id, a)
        run_worker()
        # a mass send that WeCom reports delivered
        res = admin_api.post(
            "/api/v1/sends",
            {"name": "周末活动", "text": "周末见", "target": {"external_userids": [a]}, "approve": True},
        )
        assert res.status_code == 201, res.get_json()
        run_worker()
        for msgid in list(corp.mass_tasks):
            confirm_mass_task(corp, msgid)
        with app.app_context():
            send_jobs.track_sends()
        # a lifecycle task made by a rule, then done by the member in the sidebar
        set_customer(app, a, birthday=soon(3))
        with app.app_context():
            admin = db.session.scalar(select(User.id).where(User.username == "boss"))
        rule_id = make_rule(app, admin, **{**BIRTHDAY, "window_start": "00:00", "window_end": "24:00"})
        run_now(app)
        with app.app_context():
            task_id = db.session.scalar(select(LifecycleTask.id).where(LifecycleTask.rule_id == rule_id))
            staff = db.session.scalar(select(Staff).where(Staff.userid == "staff0202"))
            actions.close_task(staff, task_id, "done")
            db.session.commit()
        run_worker()

    (moved,) = data_of(crm, "customer.transferred")
    assert moved["from_member"] == {"userid": "staff0202"} and moved["to_member"] == {"userid": "staff0203"}
    assert sorted(d["customer"]["external_userid"] for d in data_of(crm, "customer.added")) == sorted(
        [a, b]
    )  # no takeover
    assert not data_of(crm, "customer.lost")
    (joined,) = data_of(crm, "group.member_joined")
    (left,) = data_of(crm, "group.member_left")
    assert joined["group"]["chat_id"] == group.chat_id and joined["external_userid"] == b
    assert left["external_userid"] == a
    (delivered,) = data_of(crm, "send.delivered")
    assert delivered["customer"]["external_userid"] == a and delivered["name"] == "周末活动"
    (created,) = data_of(crm, "task.created")
    (done,) = data_of(crm, "task.done")
    assert created["task"]["id"] == done["task"]["id"] == task_id and created["task"]["rule_name"] == "生日关怀"
    assert done["outcome"] == "done" and done["member"] == {"userid": "staff0202"}
    with app.app_context():
        send = db.session.scalar(select(MassSend))
        assert delivered["send_id"] == send.id


def test_nothing_is_recorded_without_a_subscriber_or_after_a_rollback(app):
    with receiving() as crm:
        register(app, crm, types=["customer.lost"])
        with app.app_context():
            announce("customer.added", {"customer": {"external_userid": "wm1"}}, "wm1")  # nobody wants it
            announce("customer.lost", {"customer": {"external_userid": "wm1"}}, "wm1")
            db.session.rollback()  # what happened did not happen
            assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
            announce("customer.lost", {"customer": {"external_userid": "wm1"}}, "wm1")
            db.session.commit()
            assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_failures_are_retried_with_backoff_and_a_customer_waits_for_its_earlier_event(app, run_worker):
    with receiving(mode="fail") as crm:
        endpoint_id = register(app, crm, types=["customer.lost", "customer.added"])
        with app.app_context():
            announce("customer.added", {"n": 1}, "wm-a")
            announce("customer.lost", {"n": 2}, "wm-a")
            announce("customer.added", {"n": 3}, "wm-b")
            db.session.commit()
        run_worker()
        assert crm.attempts == 2  # the first of each customer; wm-a's second waits for its first
        with app.app_context():
            rows = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
            assert [r.attempts for r in rows] == [1, 0, 1]
            assert rows[0].last_status_code == 503 and rows[0].last_response == "try later"
            assert rows[0].next_attempt_at - rows[0].last_attempt_at == timedelta(seconds=30)
        crm.mode = "ok"
        run_worker()
        assert crm.attempts == 2  # not due yet (and the endpoint pauses after a round of failures)
        unpause(app)
        with time_machine.travel(utcnow() + timedelta(seconds=31)), app.app_context():
            jobs.send_webhooks()
            jobs.send_webhooks()
        assert [r.body["data"]["n"] for r in crm.received] in ([1, 3, 2], [3, 1, 2])
        assert [r.body["data"]["n"] for r in crm.received if r.body["data"]["n"] != 3] == [1, 2]
        with app.app_context():
            counts = endpoints.counts([endpoint_id])[endpoint_id]
            assert counts == {"pending": 0, "delivered": 3, "failed": 0}


def test_a_hanging_receiver_costs_the_others_nothing(app, monkeypatch):
    monkeypatch.setattr(sending, "READ_TIMEOUT", 0.3)
    with receiving(mode="hang", delay=2.0) as stuck, receiving() as fine:
        stuck_id = register(app, stuck, types=["customer.added"])
        register(app, fine, types=["customer.added"])
        with app.app_context():
            for i in range(20):
                announce("customer.added", {"n": i}, f"wm-{i}")
            db.session.commit()
            totals = jobs.send_webhooks()
        assert len(fine.received) == 20
        assert totals["delivered"] == 20 and totals["retrying"] >= 1
        with app.app_context():
            assert sending.paused(stuck_id)
            tried = db.session.scalar(
                select(func.count()).where(WebhookDelivery.endpoint_id == stuck_id, WebhookDelivery.attempts > 0)
            )
            # the requests in flight when failures mount (a timeout or two), then the endpoint pauses
            assert 1 <= tried < sending.PARALLEL + sending.PAUSE_AFTER
            errors = db.session.scalars(
                select(WebhookDelivery.last_error).where(
                    WebhookDelivery.endpoint_id == stuck_id, WebhookDelivery.attempts > 0
                )
            ).all()
            assert all("Timeout" in e for e in errors)


def test_a_redirect_is_not_followed_and_only_the_first_bytes_of_an_answer_are_kept(app, run_worker):
    with receiving(mode="redirect") as crm:
        register(app, crm, types=["customer.added"])
        with app.app_context():
            announce("customer.added", {"n": 1}, "wm-a")
            db.session.commit()
        run_worker()
        with app.app_context():
            row = db.session.scalar(select(WebhookDelivery))
            assert row.status == DeliveryStatus.pending and row.last_status_code == 302
            assert row.last_error == "HTTP 302"
    assert crm.attempts == 1


def test_a_day_of_failures_gives_up_switches_the_endpoint_off_and_tells_its_people(app, sim, corp, run_worker):
    with receiving(mode="fail") as crm:
        endpoint_id = register(app, crm, types=["customer.added"], alert_userids=["staff0201"])
        with app.app_context():
            announce("customer.added", {"n": 1}, "wm-a")
            db.session.commit()
        run_worker()
        unpause(app)
        before = len(corp.app_messages)
        with time_machine.travel(utcnow() + timedelta(hours=24, minutes=1)), app.app_context():
            jobs.send_webhooks()
            endpoint = db.session.get(WebhookEndpoint, endpoint_id)
            assert endpoint.enabled is False and "一天内" in endpoint.disabled_reason
            assert db.session.scalar(select(WebhookDelivery.status)) == DeliveryStatus.failed
            assert endpoints.switched_off() == [endpoint]
            assert db.session.scalar(select(AuditEntry.action).where(AuditEntry.action == "webhook_switched_off"))
            # while off, what happens is not recorded for it
            announce("customer.added", {"n": 2}, "wm-b")
            db.session.commit()
            assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
        (alert,) = corp.app_messages[before:]
        assert alert["touser"] == "staff0201" and "已将其停用" in alert["text"]["content"]
        # fixed and switched back on, the failed one is replayed by its period
        crm.mode = "ok"
        with app.app_context():
            endpoint = db.session.get(WebhookEndpoint, endpoint_id)
            endpoints.update_endpoint(
                endpoint,
                url=endpoint.url,
                description="CRM",
                event_types=["customer.added"],
                alert_userids=[],
                enabled=True,
            )
            assert endpoint.disabled_reason is None
            n = endpoints.replay_failed(endpoint, utcnow() - timedelta(days=2), utcnow() + timedelta(days=2))
            db.session.commit()
            assert n == 1
        unpause(app)
        run_worker()
        assert [r.body["data"]["n"] for r in crm.received] == [1]


def test_a_rotated_secret_signs_beside_the_old_one_for_a_day(app, run_worker):
    with receiving() as crm:
        endpoint_id = register(app, crm, types=["customer.added"])
        old = crm.secrets[0]
        with app.app_context():
            new = endpoints.rotate_secret(db.session.get(WebhookEndpoint, endpoint_id))
            announce("customer.added", {"n": 1}, "wm-a")
            db.session.commit()
        crm.secrets = [old]  # a receiver not yet told of the new secret still verifies
        run_worker()
        crm.secrets = [new]  # nor one told already
        with app.app_context():
            assert (
                endpoints.replay_one(
                    db.session.get(WebhookEndpoint, endpoint_id), db.session.scalar(select(WebhookDelivery.id))
                )
                == 1
            )
            db.session.commit()
        run_worker()
        assert [r.signed for r in crm.received] == [True, True]
        assert crm.received[0].event_id == crm.received[1].event_id  # a replay is the same event
        with time_machine.travel(utcnow() + timedelta(hours=25)), app.app_context():
            keys = endpoints.signing_secrets(db.session.get(WebhookEndpoint, endpoint_id))
            assert keys == [new]


def test_a_deleted_endpoints_queued_deliveries_are_dropped(app, run_worker):
    with receiving(mode="fail") as crm:
        endpoint_id = register(app, crm, types=["customer.added"])
        with app.app_context():
            announce("customer.added", {"n": 1}, "wm-a")
            db.session.commit()
            endpoints.delete_endpoint(db.session.get(WebhookEndpoint, endpoint_id))
            db.session.commit()
        run_worker()
        assert crm.attempts == 0
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_the_signature_is_what_a_receiver_checks():
    body = b'{"id":"evt_1"}'
    header = sending.signature_header(["whsec_a", "whsec_b"], 1_700_000_000, body)
    assert sending.verify("whsec_a", header, body, now=1_700_000_100)
    assert sending.verify("whsec_b", header, body, now=1_700_000_100)
    assert not sending.verify("whsec_c", header, body, now=1_700_000_100)
    assert not sending.verify("whsec_a", header, body + b" ", now=1_700_000_100)  # another body
    assert not sending.verify("whsec_a", header, body, now=1_700_000_400)  # too old: a replay
    assert not sending.verify("whsec_a", "v1=abc", body, now=1_700_000_100)  # no timestamp


def test_the_readmes_ten_lines_verify_what_siyu_signs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- webhook-verify -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 11
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own snippet
    readme_verify = namespace["verify"]
    body = b'{"id":"evt_1","type":"ping","data":{}}'
    header = sending.signature_header(["whsec_new", "whsec_old"], int(time.time()), body)
    assert readme_verify("whsec_new", header, body) and readme_verify("whsec_old", header, body)
    assert not readme_verify("whsec_other", header, body)
    assert not readme_verify("whsec_new", header, body.replace(b"ping", b"pong"))
    stale = sending.signature_header(["whsec_new"], int(time.time()) - 600, body)
    assert not readme_verify("whsec_new", stale, body)


def test_a_finished_handover_is_told_with_each_items_final_status(app, sim, corp, run_worker, leaver):  # noqa: F811 - leaver is the handover tests' fixture, imported
    people, chat_id = leaver
    with receiving() as crm:
        register(app, crm, types=["handover.finished"])
        with app.app_context():
            handover_id = handovers.create_handover("staff0202", "staff0201", "all", "all", None).id
            db.session.commit()
            handover_jobs.run_handover(handover_id)
        sim.transfers_take_effect(refuse=(people[0],))
        run_worker()
        with app.app_context():
            handover_jobs.follow_handovers()
        run_worker()
    (finished,) = data_of(crm, "handover.finished")
    assert finished["handover_id"] == handover_id and finished["kind"] == "resigned"
    assert finished["from_member"] == {"userid": "staff0202"} and finished["to_member"] == {"userid": "staff0201"}
    statuses = {c["external_userid"]: c["status"] for c in finished["customers"]}
    assert statuses == {p: "refused" if p == people[0] else "done" for p in people}
    assert finished["groups"] == [{"chat_id": chat_id, "status": "done", "errcode": 0}]


def test_one_transaction_reads_the_endpoints_once_and_again_after_one_is_written(app):
    with app.app_context():
        statements = []
        listen = lambda *args: statements.append(args[2])  # noqa: E731 - a listener for this block only
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            for n in range(3):  # an add announces several events: the endpoints are read once
                announce("customer.added", {"n": n}, "wm-a")
            reads = [s for s in statements if "FROM webhook_endpoints" in s]
            assert len(reads) == 1
            # an endpoint made in the same transaction hears what is announced after it
            endpoint = endpoints.create_endpoint(
                "http://127.0.0.1:9/hook", "CRM", ["customer.added"], alert_userids=[], actor=None
            )
            announce("customer.added", {"n": 3}, "wm-a")
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
        db.session.commit()
        rows = db.session.scalars(select(WebhookDelivery.endpoint_id)).all()
        assert rows == [endpoint.id]
