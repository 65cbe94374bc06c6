"""A posted moment followed against the sandbox over HTTP: who posted (get_moment_task), the customers it was
meant for and who can see it, likes and comments (a customer's is on their timeline and counts as an
interaction), reminders by app message (once automatically, a button), cancel, a scheduled moment, the
expired job id given up, tags deleted in WeCom, and the moments members post themselves."""

from datetime import timedelta

import pytest
import requests
import time_machine
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Customer, CustomerEvent, MemberMoment, Moment, MomentMember, MomentStatus
from bot.models._time import utcnow
from bot.services.moments import compose, dispatch, tracking
from bot.services.moments import jobs as tasks
from bot.services.moments.compose import MomentConflict, MomentError
from bot.services.tags.library import sync_corp_tags
from bot.wecom.errors import WeComError
from tests.conftest import customers_of
from tests.services.library_helpers import tag, user


@pytest.fixture
def shop(app, sim, corp, run_worker, roles):
    """Two customers each of staff0201 and staff0301 (the senders), one of staff0202 (not asked)."""
    added = customers_of(app, sim, run_worker, ["staff0201", "staff0301"])
    added += customers_of(app, sim, run_worker, ["staff0202"], each=1)
    return [c.external_userid for c in added]


def fake(app):
    return app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")


def member_posts(app, moment_id, userid):
    return requests.post(f"{fake(app)}sandbox/moments/{moment_id}/post", json={"userid": userid}, timeout=10)


def reacts(app, moment_id, userid, who, kind="like"):
    body = {"userid": userid, "who": who, "kind": kind}
    return requests.post(f"{fake(app)}sandbox/moments/{moment_id}/react", json=body, timeout=10)


def posted(app, roles, **fields):
    """A moment to staff0201 and staff0301, approved and dispatched: WeCom's moment id."""
    with app.app_context():
        raw = {"text": "新品上市，到店有礼", "senders": {"userids": ["staff0201", "staff0301"]}, **fields}
        moment = compose.save_draft(raw, user(roles["ops"]))
        compose.approve(moment, user(roles["boss"]))
        db.session.commit()
        assert tasks.dispatch_moment(moment.id) == {"status": "posted"}
        return moment.id, db.session.get(Moment, moment.id).moment_id


def track(app, moment_id, now=None):
    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        tracking.track(moment, now)
        db.session.commit()
        return tracking.funnel(moment)


def test_who_posted_who_saw_and_who_reacted_are_followed(app, corp, sim, roles, shop):
    moment_id, wecom_id = posted(app, roles)
    assert track(app, moment_id) == {"asked": 2, "posted": 0, "visible": 0, "reached": 0, "likes": 0, "comments": 0}
    first, second = shop[0], shop[1]  # staff0201's customers
    assert member_posts(app, wecom_id, "staff0201").json()["seen"] == [first, second]
    assert member_posts(app, wecom_id, "staff0202").json()["errcode"] == 41061  # not asked
    assert reacts(app, wecom_id, "staff0201", first).status_code == 200
    assert reacts(app, wecom_id, "staff0201", second, "comment").status_code == 200
    assert reacts(app, wecom_id, "staff0201", "staff0301").status_code == 200  # a colleague's like
    assert reacts(app, wecom_id, "staff0301", first).json()["errcode"] == 41062  # not posted yet
    funnel = track(app, moment_id)
    assert funnel == {"asked": 2, "posted": 1, "visible": 2, "reached": 2, "likes": 2, "comments": 1}
    assert track(app, moment_id) == funnel  # polled again: nothing counted twice
    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        rows = {r["userid"]: r for r in tracking.members(moment)}
        assert rows["staff0201"]["published"] and not rows["staff0301"]["published"]
        events = db.session.execute(
            select(Customer.external_userid, CustomerEvent.kind)
            .join(Customer)
            .where(CustomerEvent.kind.like("moment%"))
        ).all()
        assert sorted(events) == sorted([(first, "moment_liked"), (second, "moment_commented")])
        assert db.session.scalar(select(Customer.last_interaction_at).where(Customer.external_userid == first))
        kinds = {(r["kind"], r["by_customer"]) for r in tracking.reactions(moment)}
        assert kinds == {("like", True), ("comment", True), ("like", False)}
        stores = tracking.by_store(tracking.members(moment))  # the two members are in two stores
        assert sorted((s["asked"], s["posted"], s["reached"]) for s in stores) == [(1, 0, 0), (1, 1, 2)]
        assert all(s["store"] for s in stores)
    # who can see it is read when a member is first seen posted; likes and comments on every pass
    assert corp.calls.count("externalcontact/get_moment_customer_list") == 1
    assert corp.calls.count("externalcontact/get_moment_send_result") == 1
    assert corp.calls.count("externalcontact/get_moment_comments") == 2
    sim.customer_deletes_member(second, "staff0201")  # gone since: the last pass reads the reach again
    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        assert moment.posted_at is not None
        last = moment.posted_at + tracking.TRACK_FOR + timedelta(minutes=1)
    assert track(app, moment_id, last)["reached"] == 2  # the sandbox keeps who saw it when it was posted
    assert corp.calls.count("externalcontact/get_moment_send_result") == 2
    with app.app_context():
        assert db.session.get(Moment, moment_id).finished_at == last
        assert moment_id not in tracking.tracked_moments()  # polling has stopped


def test_members_who_have_not_posted_are_reminded_once_automatically_and_by_the_button(app, corp, roles, shop):
    moment_id, wecom_id = posted(app, roles, remind_after_hours=2)
    member_posts(app, wecom_id, "staff0201")
    track(app, moment_id)
    assert not [m for m in corp.app_messages if "朋友圈" in str(m)]  # too early
    later = utcnow() + timedelta(hours=3)
    track(app, moment_id, later)
    track(app, moment_id, later + timedelta(hours=2))  # automatic: once only
    reminders = [m for m in corp.app_messages if "朋友圈" in str(m)]
    assert [m["touser"] for m in reminders] == ["staff0301"]
    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        counts = tracking.remind(moment, tracking.waiting(moment), now=later + timedelta(minutes=10))
        assert counts == {"reminded": 0, "limited": 1, "posted": 0, "failed": 0}  # reminded within the hour
        counts = tracking.remind(moment, db.session.scalars(select(MomentMember)).all(), now=later + timedelta(hours=2))
        assert counts == {"reminded": 1, "limited": 0, "posted": 1, "failed": 0}
        db.session.commit()
        member = db.session.scalar(select(MomentMember).where(MomentMember.userid == "staff0301"))
        assert member.reminders == 2 and member.auto_reminded


def test_cancel_stops_who_has_not_posted_and_keeps_what_was_posted(app, corp, roles, shop):
    moment_id, wecom_id = posted(app, roles)
    member_posts(app, wecom_id, "staff0201")
    with app.app_context():
        moment = db.session.get(Moment, moment_id)
        with pytest.raises(MomentConflict):
            tracking.cancel(moment, user(roles["mgr3"]))  # neither the author nor an admin
        tracking.cancel(moment, user(roles["ops"]))
        db.session.commit()
        assert moment.status == MomentStatus.cancelled and moment.cancelled_at
        with pytest.raises(MomentConflict):
            tracking.remind(moment, tracking.waiting(moment))
        assert db.session.scalar(select(AuditEntry.action).where(AuditEntry.action == "cancel_moment"))
    assert corp.calls.count("externalcontact/cancel_moment_task") == 1
    assert member_posts(app, wecom_id, "staff0301").status_code == 400  # WeCom no longer lets them post
    with app.app_context():
        assert moment_id in tracking.tracked_moments()  # what was posted is still counted
    assert track(app, moment_id)["posted"] == 1 and track(app, moment_id)["reached"] == 2


def test_a_moment_cancelled_before_dispatch_asks_nothing_of_wecom_and_one_dispatching_is_refused(app, corp, roles):
    with app.app_context():
        moment = compose.save_draft({"text": "新品", "senders": {"everyone": True}}, user(roles["ops"]))
        compose.approve(moment, user(roles["boss"]))
        tracking.cancel(moment, user(roles["boss"]))
        db.session.commit()
        assert tasks.dispatch_moment(moment.id) == {"status": "cancelled"}
        other = compose.save_draft({"text": "新品", "senders": {"everyone": True}}, user(roles["ops"]))
        other.status = MomentStatus.dispatching
        with pytest.raises(MomentConflict):
            tracking.cancel(other, user(roles["boss"]))
    assert corp.calls.count("externalcontact/add_moment_task") == 0


def test_a_scheduled_moment_waits_for_its_time(app, corp, roles):
    with app.app_context():
        with pytest.raises(MomentError) as refused:
            compose.save_draft(
                {"text": "x", "senders": {"everyone": True}, "scheduled_at": "2020-01-01T10:00"}, user(roles["ops"])
            )
        assert refused.value.field == "scheduled_at"
        db.session.rollback()
        when = (utcnow() + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M")  # corp time (UTC+8): in an hour
        moment = compose.save_draft(
            {"text": "x", "senders": {"everyone": True}, "scheduled_at": when}, user(roles["ops"])
        )
        compose.approve(moment, user(roles["boss"]))
        db.session.commit()
        assert tasks.due_moments(timedelta(minutes=5)) == []
        with time_machine.travel(utcnow() + timedelta(hours=2), tick=False):
            assert tasks.due_moments(timedelta(minutes=5)) == [moment.id]


def test_an_expired_job_id_is_given_up_unless_wecom_lists_the_moment(app, corp, roles):
    with app.app_context():
        moment = compose.save_draft({"text": "过期", "senders": {"everyone": True}}, user(roles["ops"]))
        compose.approve(moment, user(roles["boss"]))
        db.session.commit()
        moment.status, moment.called_at, moment.jobid = (
            MomentStatus.dispatching,
            utcnow() - timedelta(hours=25),
            "job-gone",
        )
        db.session.commit()
        dispatch.dispatch(moment, sleep=lambda _: None)
        db.session.commit()
        assert moment.status == MomentStatus.failed and "expired" in moment.error
        young = compose.save_draft({"text": "新", "senders": {"everyone": True}}, user(roles["ops"]))
        young.status, young.called_at, young.jobid = MomentStatus.dispatching, utcnow(), "job-gone"
        db.session.commit()
        with pytest.raises(WeComError):  # the job id still lives: polled again later
            dispatch.dispatch(young, sleep=lambda _: None)


def test_tags_deleted_in_wecom_leave_the_moments_waiting(app, corp, roles):
    with app.app_context():
        vip, new = tag("VIP"), tag("新客")
        ops = user(roles["ops"])
        both = compose.save_draft({"text": "a", "senders": {"everyone": True}, "tag_ids": [vip, new]}, ops)
        compose.approve(both, user(roles["boss"]))
        only = compose.save_draft({"text": "b", "senders": {"everyone": True}, "tag_ids": [vip]}, ops)
        db.session.commit()
        both_id, only_id = both.id, only.id
    for group in corp.tag_groups.values():
        group["tag"] = [t for t in group["tag"] if t["id"] != vip]
    with app.app_context():
        sync_corp_tags()
        db.session.commit()
        both, only = db.session.get(Moment, both_id), db.session.get(Moment, only_id)
        assert both.tag_ids == [new] and both.status == MomentStatus.pending_approval
        assert only.tag_ids == [vip] and only.status == MomentStatus.draft and only.error == compose.TAGS_GONE
        gone = db.session.scalars(select(AuditEntry.target).where(AuditEntry.action == "moment_tags_gone")).all()
        assert sorted(gone) == sorted([f"moment:{both_id}", f"moment:{only_id}"])
    from tests.admin.test_library_pages import browser

    page = browser(app, "ops").get(f"/admin/moments/{only_id}").get_data(as_text=True)
    assert "所选标签都已在企业微信中删除" in page


def test_the_preview_counts_members_and_their_customers(app, roles, shop):
    with app.app_context():
        ops = user(roles["ops"])
        assert compose.preview({"senders": {"userids": ["staff0201", "staff0301"]}}, ops) == {
            "members": 2,
            "customers": 4,
        }
        assert compose.preview({"senders": {"everyone": True}}, user(roles["mgr2"]))["customers"] == 3
        vip = tag("VIP")
        assert compose.preview({"senders": {"everyone": True}, "tag_ids": [vip]}, ops) == {"members": 4, "customers": 0}


def test_members_own_moments_are_listed(app, corp, roles):
    from bot.sandbox.moments import post_own_moment

    post_own_moment(corp, "staff0201", "今天到店的新品", "image")
    post_own_moment(corp, "staff0301", "周末活动")
    with app.app_context():
        assert tasks.sync_member_moments() == 2
        assert tasks.sync_member_moments() == 0  # kept once each
        rows = db.session.scalars(select(MemberMoment).order_by(MemberMoment.creator)).all()
        assert [(r.creator, r.kind) for r in rows] == [("staff0201", "image"), ("staff0301", "")]
        mine = tracking.member_activity(user(roles["mgr2"]), utcnow() - timedelta(days=1))
        assert [r["userid"] for r in mine] == ["staff0201"]  # a store manager sees their store's members


def test_a_member_sees_the_moment_waiting_for_them_in_the_sidebar_home(app, client, corp, roles, shop):
    from tests.admin.test_sidebar import sign_in_member

    moment_id, wecom_id = posted(app, roles, text="周末到店有礼，欢迎来玩")
    track(app, moment_id)
    sign_in_member(client, "staff0301")
    page = client.get("/sidebar/home").get_data(as_text=True)
    assert 'id="waiting-moments"' in page and "周末到店有礼" in page
    member_posts(app, wecom_id, "staff0301")
    track(app, moment_id)
    page = client.get("/sidebar/home").get_data(as_text=True)
    assert "周末到店有礼" not in page and "没有等待发表的朋友圈" in page


def test_too_many_tasks_in_flight_is_waited_out_not_failed(app, corp, roles):
    with app.app_context():
        moment = compose.save_draft({"text": "排队", "senders": {"everyone": True}}, user(roles["ops"]))
        compose.approve(moment, user(roles["boss"]))
        db.session.commit()
        corp.inject("externalcontact/add_moment_task", 41078, times=2)
        waits = []
        dispatch.dispatch(moment, sleep=waits.append)
        db.session.commit()
        assert moment.status == MomentStatus.posted and waits[:2] == [dispatch.IN_FLIGHT_PAUSE] * 2
        assert corp.calls.count("externalcontact/add_moment_task") == 3
        stuck = compose.save_draft({"text": "一直排队", "senders": {"everyone": True}}, user(roles["ops"]))
        compose.approve(stuck, user(roles["boss"]))
        db.session.commit()
        corp.inject("externalcontact/add_moment_task", 41078, times=dispatch.IN_FLIGHT_WAITS + 1)
        dispatch.dispatch(stuck, sleep=lambda _: None)
        db.session.commit()
        assert stuck.status == MomentStatus.dispatching and stuck.called_at is None and stuck.error is None
        assert stuck.id in tasks.due_moments(timedelta(seconds=-1))  # taken up again by the next sweep


def test_a_moment_wecom_refuses_to_report_on_does_not_stop_the_others(app, corp, roles, shop):
    first, first_id = posted(app, roles)
    second, wecom_id = posted(app, roles, text="第二条")
    member_posts(app, wecom_id, "staff0201")
    corp.inject("externalcontact/get_moment_task", 41060)  # the first moment's poll is refused
    with app.app_context():
        assert tasks.track_moments() == 2
        assert db.session.get(Moment, first).tracked_at is None
        assert db.session.get(Moment, second).tracked_at is not None
        assert tracking.funnel(db.session.get(Moment, second))["posted"] == 1
    member_posts(app, first_id, "staff0201")
    member_posts(app, first_id, "staff0301")
    corp.inject("externalcontact/get_moment_comments", 48002)  # one member's poll refused: the other's recorded
    assert track(app, first)["reached"] == 2
    with app.app_context():
        rows = db.session.scalars(select(MomentMember).where(MomentMember.moment_id == first)).all()
        assert sorted(m.visible is None for m in rows) == [False, True]  # the refused one is left as it was
    assert track(app, first)["reached"] == 4  # polled again on the next pass
