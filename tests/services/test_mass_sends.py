"""Mass sends through the sandbox: each customer once, from one member; approval; caps; 45009; a worker
killed mid-dispatch; cancellation; reminders; a store manager's scope; bad input. (Attachments:
test_mass_send_media.py.)"""

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bot.extensions import db, redis_conn
from bot.models import AuditEntry, MassSend, SendChunk, SendRecipient, SendStatus
from bot.models._time import utcnow
from bot.sandbox.members import confirm_mass_task
from bot.services.sends import compose as sends
from bot.services.sends import dispatch, recipients, waves
from bot.services.sends import jobs as tasks
from bot.services.sends import tracking as send_tracking
from tests.conftest import ApiClient, child_env, customers_of, make_token, make_user

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ["staff0201", "staff0202", "staff0301", "staff0302"]


@pytest.fixture
def people(app, sim, corp, run_worker):
    """Eight customers, two per member of two stores; the first also follows a second member (staff0301)."""
    added = customers_of(app, sim, run_worker, MEMBERS)
    sim.customer_adds_another(added[0].external_userid, "staff0301")
    run_worker()
    return added


def everyone(people):
    return {"external_userids": [p.external_userid for p in people]}


def new_send(api, people, **fields):
    body = {"name": "双十一预热", "text": "{store_name}的{staff_name}：会员日全场 8 折", "target": everyone(people)}
    res = api.post("/api/v1/sends", {**body, **fields})
    assert res.status_code == 201, res.get_json()
    return res.get_json()


def tasks_by_member(corp):
    return {t.sender: sorted(t.recipients) for t in corp.mass_tasks.values()}


@pytest.mark.parametrize(("rule", "sender"), [("first", "staff0201"), ("latest", "staff0301")])
def test_each_customer_gets_the_send_once_from_one_member(app, corp, people, admin_api, run_worker, rule, sender):
    send = new_send(admin_api, people, approve=True, sender_rule=rule)
    assert send["status"] == "approved" and send["approved_count"] == 8
    assert send["preview"] == {
        "targeted": 8, "recipients": 8, "members": 4, "chunks": 4, "over_cap": 0, "skipped": 0, "no_follower": 0
    }  # fmt: skip
    run_worker()
    by_member = tasks_by_member(corp)
    assert sorted(by_member) == MEMBERS
    received = [e for ids in by_member.values() for e in ids]
    assert sorted(received) == sorted(p.external_userid for p in people)  # everyone once
    assert people[0].external_userid in by_member[sender]
    # {store_name}/{staff_name} are filled per member: each task carries its own member's name
    with app.app_context():
        from bot.models import Staff

        name = db.session.scalar(select(Staff.name).where(Staff.userid == "staff0202"))
    task = next(t for t in corp.mass_tasks.values() if t.sender == "staff0202")
    assert task.payload["text"]["content"] == f"静安寺店的{name}：会员日全场 8 折"
    # every member with a task got one app message, batched
    notices = [m for m in corp.app_messages if "群发" in m["text"]["content"]]
    assert len(notices) == 1 and sorted(notices[0]["touser"].split("|")) == MEMBERS

    msgids = list(corp.mass_tasks)
    for msgid in msgids[:3]:  # three members send, one never does
        confirm_mass_task(corp, msgid)
    expected = 8 - len(corp.mass_tasks[msgids[3]].recipients)
    with app.app_context():
        assert tasks.track_sends() == 1
        funnel = send_tracking.funnel(db.session.get(MassSend, send["id"]))
    assert funnel["targeted"] == 8 and funnel["in_task"] == 8
    assert funnel["confirmed"] == funnel["delivered"] == expected
    res = admin_api.get(f"/api/v1/sends/{send['id']}")
    assert res.get_json()["status"] == "tracking"
    csv = admin_api.get(f"/api/v1/sends/{send['id']}/recipients.csv").get_data(as_text=True)
    assert csv.startswith("\ufeffexternal_userid,name,sender,status,over_cap")
    assert csv.count(",sent,") == funnel["delivered"] and csv.count(",queued,") == 8 - funnel["delivered"]


def test_operators_draft_and_admins_approve_with_an_audit_trail(app, corp, people, admin_api, operator_api, run_worker):
    send = new_send(operator_api, people)
    assert send["status"] == "draft" and send["preview"]["recipients"] == 8
    sid = send["id"]
    assert operator_api.post(f"/api/v1/sends/{sid}/approve").status_code == 403
    assert operator_api.post(f"/api/v1/sends/{sid}/submit").get_json()["status"] == "pending_approval"
    rejected = admin_api.post(f"/api/v1/sends/{sid}/reject", {"reason": "文案再改改"}).get_json()
    assert rejected["status"] == "draft" and rejected["error"] == "文案再改改"
    operator_api.patch(f"/api/v1/sends/{sid}", {"text": "会员日全场 8 折，{staff_name} 恭候"})
    operator_api.post(f"/api/v1/sends/{sid}/submit")
    approved = admin_api.post(f"/api/v1/sends/{sid}/approve").get_json()
    assert approved["status"] == "approved" and approved["approved_count"] == 8
    assert operator_api.patch(f"/api/v1/sends/{sid}", {"text": "改"}).status_code == 409
    run_worker()
    assert len(corp.mass_tasks) == 4
    with app.app_context():
        actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    for step in ("save_send", "submit_send", "reject_send", "approve_send"):
        assert step in actions


def test_a_scheduled_send_waits_for_its_time(app, corp, people, admin_api, run_worker):
    later = (utcnow() + timedelta(hours=2)).replace(microsecond=0).isoformat() + "+00:00"
    send = new_send(admin_api, people, approve=True, scheduled_at=later)
    run_worker()
    assert corp.mass_tasks == {}
    with app.app_context():
        assert sends.due_sends(utcnow(), timedelta(seconds=90)) == []
        assert sends.due_sends(utcnow() + timedelta(hours=3), timedelta(seconds=90)) == [send["id"]]


@pytest.mark.parametrize("policy", ["skip", "report"])
def test_the_per_customer_cap_is_counted_by_siyu(app, corp, people, admin_api, run_worker, policy):
    app.config["SIYU"] = replace(app.config["SIYU"], mass_cap="day")  # 1 a day
    try:
        first = new_send(admin_api, people[:3], approve=True)
        run_worker()
        assert sum(len(t.recipients) for t in corp.mass_tasks.values()) == 3
        preview = admin_api.post("/api/v1/sends/preview", {"target": everyone(people), "cap_policy": policy})
        assert preview.get_json()["over_cap"] == 3
        second = new_send(admin_api, people, approve=True, cap_policy=policy)
        run_worker()
        data = admin_api.get(f"/api/v1/sends/{second['id']}").get_json()
        sent_twice = [t for t in corp.mass_tasks.values() if t.msgid not in _msgids(app, first["id"])]
        second_ids = sorted(e for t in sent_twice for e in t.recipients)
        if policy == "skip":
            assert data["funnel"]["skipped_cap"] == 3 and len(second_ids) == 5
            assert not set(second_ids) & {p.external_userid for p in people[:3]}
        else:
            assert data["funnel"]["skipped_cap"] == 0 and len(second_ids) == 8
            flagged = admin_api.get(f"/api/v1/sends/{second['id']}/recipients?limit=100").get_json()["items"]
            assert sum(r["over_cap"] for r in flagged) == 3
    finally:
        app.config["SIYU"] = replace(app.config["SIYU"], mass_cap="month")


def _msgids(app, send_id):
    with app.app_context():
        return set(db.session.scalars(select(SendChunk.msgid).where(SendChunk.send_id == send_id)))


def test_45009_is_waited_out_and_no_chunk_is_lost(app, corp, people, admin_api):
    send = new_send(admin_api, people, approve=False)
    corp.inject("externalcontact/add_msg_template", 45009, times=2)
    waits = []

    def sleep(seconds):  # the rate window passes
        waits.append(seconds)
        redis_conn.client.delete("siyu:wecom:budget:blocked:externalcontact/add_msg_template")

    with app.app_context():
        row = db.session.get(MassSend, send["id"])
        sends.approve(row, _admin(app))
        db.session.commit()
        dispatch.dispatch(row, sleep=sleep)
        db.session.commit()
        # The four chunks go out side by side: the first 45009 closes the API for the wave's other calls
        # too, so one wait or two, depending on whether the second refusal came in the same wave.
        assert 1 <= len(waits) <= 2 and row.status == SendStatus.tracking
        assert dispatch.counts(row) == {"created": 4}
    assert sum(len(t.recipients) for t in corp.mass_tasks.values()) == 8


def _admin(app):
    from bot.models import Role, User

    return db.session.scalar(select(User).where(User.role == Role.admin))


CHILD = """
import sys
from bot import create_app
from bot.jobs.context import bind_app
from bot.services.sends import waves
from bot.services.sends.jobs import dispatch_send
waves.WAVE = int(sys.argv[2])
app = create_app()
bind_app(app)
dispatch_send(int(sys.argv[1]))
"""


@pytest.mark.parametrize("wave", [128, 2])
def test_a_worker_killed_mid_dispatch_resumes_without_a_chunk_twice_or_lost(app, corp, people, admin_api, wave):
    """The worst moment: WeCom has made the task, the worker dies before it records the answer. In waves of
    two, two waves are then in doubt at once: the second was called while the first's answer was held."""
    send = new_send(admin_api, people)
    with app.app_context():
        sends.approve(db.session.get(MassSend, send["id"]), _admin(app))
        db.session.commit()
    # The first two calls are answered late: whichever waves they belong to, none is recorded before the kill.
    holds = [corp.hold("externalcontact/add_msg_template") for _ in range(2)]
    settings = app.config["SIYU"]
    # The four members' chunks are called side by side (one wave, or two overlapping): all four are made in
    # WeCom, and the worker dies before it records any answer (it records a wave's answers together, the
    # first wave's before the second's).
    env = child_env(settings)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(send["id"]), str(wave)], cwd=ROOT, env=env)
    try:
        for hold in holds:
            assert hold.reached.wait(60), "the dispatch never reached its second chunk"
        deadline = time.monotonic() + 30
        while len(corp.mass_tasks) < 4 and time.monotonic() < deadline:  # the other calls
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        for hold in holds:
            hold.release.set()
        if child.poll() is None:
            child.kill()
    assert len(corp.mass_tasks) == 4
    with app.app_context():
        statuses = sorted(str(s) for s in db.session.scalars(select(SendChunk.status)))
        assert statuses == ["calling"] * 4
        assert len(set(db.session.scalars(select(SendChunk.called_at)))) == (2 if wave == 2 else 1)  # claims
        # The dispatcher sees the dead worker's send go quiet and queues it again …
        assert sends.due_sends(utcnow() + timedelta(minutes=2), timedelta(seconds=90)) == [send["id"]]
    redis_conn.client.delete(f"siyu:dispatch:{send['id']}")  # … once the dead worker's lock has lapsed
    with app.app_context():
        assert tasks.dispatch_send(send["id"]) == {"created": 4}
    assert corp.calls.count("externalcontact/add_msg_template") == 4  # the ones in doubt were adopted
    by_member = tasks_by_member(corp)
    assert sorted(by_member) == MEMBERS
    assert sorted(e for ids in by_member.values() for e in ids) == sorted(p.external_userid for p in people)
    with app.app_context():
        msgids = set(db.session.scalars(select(SendChunk.msgid)))
        assert msgids == set(corp.mass_tasks)


def test_a_chunk_in_doubt_is_found_by_its_member_and_its_content(app, corp, people, admin_api):
    """WeCom's list of mass messages names no creator for those made through the API (获取群发记录列表), so a
    chunk whose answer was lost is recognised by what it says and by the member asked to send it: not by a
    message of the same member saying something else, nor one saying the same to another member."""
    from bot.models import ChunkStatus
    from bot.services.clients import contact_api

    send = new_send(admin_api, people, attachments=[{"type": "link", "title": "会员日", "url": "https://e.com/d"}])
    with app.app_context():
        row = db.session.get(MassSend, send["id"])
        sends.approve(row, _admin(app))
        recipients.resolve(row)
        db.session.commit()
        mine, other, lost = db.session.scalars(
            select(SendChunk).where(SendChunk.send_id == row.id).order_by(SendChunk.id).limit(3)
        ).all()
        api = contact_api()
        payloads = dispatch.Payloads(row, api)
        body = payloads.body(mine.staff, recipients.chunk_recipients(mine))
        other_body = payloads.body(other.staff, recipients.chunk_recipients(other))
        decoys = [
            api.add_msg_template({**body, "text": {"content": "另一条群发"}}),  # the member, other words
            api.add_msg_template({**body, "attachments": []}),  # the member, the words without the link
            api.add_msg_template({**other_body, "text": body["text"]}),  # the same words to another member
        ]
        made = api.add_msg_template(body)["msgid"]  # the call whose answer was lost
        for chunk in (mine, lost):  # `lost`: its call never reached WeCom
            chunk.status, chunk.called_at = ChunkStatus.calling, utcnow() - timedelta(seconds=1)
        db.session.commit()
        assert dispatch.reconcile(mine, api) is True
        assert mine.msgid == made and mine.status == ChunkStatus.created
        assert dispatch.reconcile(lost, api) is False and lost.status == ChunkStatus.pending
        db.session.commit()
        assert made not in {d["msgid"] for d in decoys}


def test_cancel_before_during_and_after_dispatch(app, corp, people, admin_api, run_worker, monkeypatch):
    monkeypatch.setattr(waves, "WAVE", 2)  # two waves of two members: the cancel comes during the first
    later = (utcnow() + timedelta(hours=2)).isoformat()
    waiting = new_send(admin_api, people, approve=True, scheduled_at=later)
    assert admin_api.post(f"/api/v1/sends/{waiting['id']}/cancel").get_json()["status"] == "cancelled"
    assert admin_api.post(f"/api/v1/sends/{waiting['id']}/cancel").status_code == 409

    during = new_send(admin_api, people)
    with app.app_context():
        sends.approve(db.session.get(MassSend, during["id"]), _admin(app))
        db.session.commit()
    hold = corp.hold("externalcontact/add_msg_template", skip=1)
    # The second wave is read while the first answers; it is claimed only after the cancel is on record.
    cancelled, read, reads = threading.Event(), recipients.chunks_recipients, []

    def read_after_the_cancel(send, keys):
        reads.append(keys)
        if len(reads) > 1:  # the second wave's
            assert cancelled.wait(30)
        return read(send, keys)

    monkeypatch.setattr(recipients, "chunks_recipients", read_after_the_cancel)

    def run():
        with app.app_context():
            tasks.dispatch_send(during["id"])

    worker = threading.Thread(target=run)
    worker.start()
    assert hold.reached.wait(30)
    assert admin_api.post(f"/api/v1/sends/{during['id']}/cancel").get_json()["status"] == "cancelled"
    cancelled.set()
    hold.release.set()
    worker.join(30)
    run_worker()  # the cancel job: WeCom stops the tasks made, what was left is never called
    assert len(corp.mass_tasks) == 2 and all(t.cancelled for t in corp.mass_tasks.values())
    with app.app_context():
        statuses = sorted(str(s) for s in db.session.scalars(select(SendChunk.status)))
        assert statuses == ["cancelled", "cancelled", "created", "created"]
        cancelled = db.session.scalar(
            select(func.count()).where(SendRecipient.send_id == during["id"], SendRecipient.status == "cancelled")
        )
        assert cancelled == 4


def test_reminders_are_limited_to_three_a_day_and_the_rule_reminds_by_itself(app, corp, people, admin_api, run_worker):
    send = new_send(admin_api, people, approve=True, auto_remind_hours=2)
    run_worker()
    sid = send["id"]
    first = admin_api.post(f"/api/v1/sends/{sid}/remind", {"userids": ["staff0201"]}).get_json()
    assert first == {"reminded": 1, "limited": 0, "confirmed": 0, "failed": 0}
    admin_api.post(f"/api/v1/sends/{sid}/remind", {"userids": ["staff0201"]})
    admin_api.post(f"/api/v1/sends/{sid}/remind", {"userids": ["staff0201"]})
    fourth = admin_api.post(f"/api/v1/sends/{sid}/remind", {"userids": ["staff0201"]}).get_json()
    assert fourth["limited"] == 1 and fourth["reminded"] == 0
    members = {m["userid"]: m for m in admin_api.get(f"/api/v1/sends/{sid}/members").get_json()["items"]}
    assert members["staff0201"]["reminders_left"] == 0 and members["staff0202"]["reminders_left"] == 3
    confirm_mass_task(corp, next(t.msgid for t in corp.mass_tasks.values() if t.sender == "staff0202"))
    with app.app_context():
        row = db.session.get(MassSend, sid)
        send_tracking.track(row, now=utcnow() + timedelta(hours=3))
        db.session.commit()
        automatic = db.session.scalars(select(SendChunk).where(SendChunk.send_id == sid)).all()
        reminded = {c.staff.userid: len([r for r in c.reminders if r.automatic]) for c in automatic}
    # the two members who neither sent nor hit the limit were reminded by the rule; the confirmed one not
    assert reminded == {"staff0201": 0, "staff0202": 0, "staff0301": 1, "staff0302": 1}
    assert sum(len(t.reminders) for t in corp.mass_tasks.values()) == 5


def test_a_store_manager_sends_within_their_stores_from_their_members(app, client, corp, people, admin_api):
    with app.app_context():
        from bot.models import Store

        jingan = db.session.scalar(select(Store.department_id).where(Store.name == "静安寺店"))
    manager = ApiClient(client, make_token(app, make_user(app, "jingan", "store_manager", [jingan])[0]))
    send = new_send(manager, people, sender_rule="store")
    # only the four customers of 静安寺店's members; the one followed in both stores goes from 静安寺店
    assert send["preview"]["recipients"] == 4
    assert manager.get(f"/api/v1/sends/{send['id']}").status_code == 200
    other = new_send(admin_api, people)
    assert manager.get(f"/api/v1/sends/{other['id']}").status_code == 404
    assert [s["id"] for s in manager.get("/api/v1/sends").get_json()["items"]] == [send["id"]]
    assert manager.post(f"/api/v1/sends/{send['id']}/approve").status_code == 403


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "name:"),
        ({"text": "字" * 1334}, "text: 文字最多 4000 字节"),
        ({"text": "{customer_name}您好"}, "text:"),
        ({"text": "", "attachments": []}, "text: 需要文字或附件"),
        ({"attachments": [{"type": "link", "title": "x", "url": "javascript:alert(1)"}]}, "attachments:"),
        ({"attachments": [{"type": "image", "file_id": 999}]}, "attachments:"),
        (
            {"attachments": [{"type": "link", "title": "x", "url": "https://a.b"}] * 10},
            "attachments: List should have at most 9 items",
        ),
        ({"attachments": [{"type": "voice"}]}, "attachments:"),
        ({"target": {}}, "target:"),
        ({"target": {"segment_id": 999}}, "target: 客户分群不存在"),
        ({"target": {"segment_id": 1, "external_userids": ["a"]}}, "target:"),
        ({"target": {"rule": {"conditions": [{"type": "sql"}]}}}, "target:"),
        ({"target": {"external_userids": ["x" * 65]}}, "target.external_userids[0]: String should have at most 64"),
        ({"sender_rule": "random"}, "sender_rule:"),
        ({"cap_policy": "ignore"}, "cap_policy:"),
        ({"auto_remind_hours": 100}, "auto_remind_hours:"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at:"),
        ({"scheduled_at": "0001-01-01"}, "scheduled_at: 日期应在 1900-01-01 与 2100-12-31 之间"),
        ({"scheduled_at": "9999-12-31T23:59"}, "scheduled_at: 日期应在 1900-01-01 与 2100-12-31 之间"),
        ({"scheduled_at": "9999-12-31T23:59:59-12:00"}, "scheduled_at: 日期应在 1900-01-01 与 2100-12-31 之间"),
    ],
)
def test_bad_sends_are_400_naming_the_field(admin_api, people, fields, message):
    body = {"name": "n", "text": "t", "target": everyone(people), **fields}
    res = admin_api.post("/api/v1/sends", body)
    assert res.status_code == 400, res.get_json()
    assert res.get_json()["error"]["message"].startswith(message)


def test_a_nul_anywhere_is_refused(admin_api, people):
    res = admin_api.post("/api/v1/sends", {"name": "n\x00", "text": "t", "target": everyone(people)})
    assert res.status_code == 400


def test_a_send_whose_segment_was_deleted_fails_with_the_reason(app, corp, people, admin_api, run_worker):
    rule = {"conditions": [{"type": "staff", "userids": ["staff0201"]}]}
    segment = admin_api.post("/api/v1/segments", {"name": "静安", "rule": rule}).get_json()
    send = new_send(admin_api, people, approve=False, target={"segment_id": segment["id"]})
    assert send["preview"]["recipients"] == 2
    with app.app_context():
        row = db.session.get(MassSend, send["id"])
        sends.approve(row, _admin(app))
        from bot.models import Segment

        db.session.delete(db.session.get(Segment, segment["id"]))
        db.session.commit()
        assert tasks.dispatch_send(send["id"]) == {}  # no chunk: nothing was resolved
    data = admin_api.get(f"/api/v1/sends/{send['id']}").get_json()
    assert data["status"] == "failed" and data["error"] == "客户分群已被删除" and corp.mass_tasks == {}


def test_a_cancel_while_recipients_are_resolved_is_not_overwritten(app, corp, people, admin_api, monkeypatch):
    """An admin cancels while the worker is inside the (long) resolve: the worker's later commits must not
    put the send back to dispatching, and no chunk is called."""

    send = new_send(admin_api, people)
    resolve = recipients.resolve

    def resolve_while_an_admin_cancels(row):
        with db.engine.begin() as other:  # the admin's request, in its own transaction
            other.execute(update(MassSend).where(MassSend.id == row.id).values(status="cancelled"))
        return resolve(row)

    monkeypatch.setattr(recipients, "resolve", resolve_while_an_admin_cancels)
    with app.app_context():
        row = db.session.get(MassSend, send["id"])
        sends.approve(row, _admin(app))
        db.session.commit()
        dispatch.dispatch(row)
        db.session.commit()
        assert db.session.get(MassSend, send["id"]).status == SendStatus.cancelled
    assert corp.mass_tasks == {}
