"""Lifecycle triggers through the sandbox, with the clock moved (time-machine): birthdays across month and
year ends and leap days (and read from a member's remark), the follow-up sequence, dormancy, tags added,
losses; the daily window; a rule's audience; the dry run."""

from datetime import date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select, update

from bot.extensions import db
from bot.models import Customer, LifecycleRule, LifecycleTask, RuleRun, Tag, User
from bot.models._time import utcnow
from bot.services.lifecycle import reports
from bot.services.lifecycle import rules as lifecycle
from tests.services.lifecycle_helpers import (
    BIRTHDAY,
    SHANGHAI,
    at,
    cards,
    make_rule,
    run_at,
    run_now,
    set_customer,
    tasks,
)


def test_birthdays_three_days_ahead_once_each_inside_the_window(app, corp, shop, admin):
    a, b, c, d = (p.external_userid for p in shop[:4])
    set_customer(app, a, birthday=date(1990, 12, 4))  # 3 days after Dec 1
    set_customer(app, b, birthday=date(1985, 12, 2))  # in 1 day: still within the 3
    set_customer(app, c, birthday=date(1991, 12, 5))  # 4 days: not yet
    set_customer(app, d, birthday=date(1992, 11, 30))  # yesterday: gone
    rule_id = make_rule(app, admin, **BIRTHDAY)

    assert run_at(app, "2026-12-01 09:59").rules == 0  # before the 10:00–20:00 window nothing happens
    assert tasks(app, rule_id) == []

    first = run_at(app, "2026-12-01 10:05")
    assert first.matched == 2 and first.reminded == 2
    assert sorted(tasks(app, rule_id)) == sorted([(a, "birthday:2026"), (b, "birthday:2026")])
    # a and b are both staff0201's customers: one card for the member, naming both
    assert len(cards(corp)) == 1 and cards(corp)[0]["touser"] == "staff0201"
    card = cards(corp)[0]["textcard"]
    assert card["title"] == "今日任务：2 位客户" and "生日关怀" in card["description"]

    again = run_at(app, "2026-12-01 10:15")  # the next run the same day: nothing new, nobody reminded twice
    assert again.matched == 0 and again.reminded == 0 and len(cards(corp)) == 1

    next_day = run_at(app, "2026-12-02 10:05")
    assert next_day.matched == 1 and tasks(app, rule_id)[-1] == (c, "birthday:2026")
    assert len(cards(corp)) == 2

    with app.app_context():
        runs = db.session.scalars(select(RuleRun).where(RuleRun.rule_id == rule_id).order_by(RuleRun.id)).all()
        assert [(r.status, r.matched, r.reminded) for r in runs] == [("ok", 2, 2), ("ok", 0, 0), ("ok", 1, 1)]
        assert all(r.finished_at is not None for r in runs)


@pytest.mark.parametrize(
    ("today", "birthday", "occurrence"),
    [
        ("2026-12-30 11:00", date(1990, 1, 2), "birthday:2027"),  # across New Year: next year's birthday
        ("2026-12-30 11:00", date(1990, 12, 31), "birthday:2026"),
        ("2027-02-27 11:00", date(1992, 2, 29), "birthday:2027"),  # no 29 February in 2027: kept on the 28th
        ("2026-04-28 11:00", date(1990, 5, 1), "birthday:2026"),  # across a month end
    ],
)
def test_birthdays_across_month_and_year_ends_and_leap_days(app, shop, admin, today, birthday, occurrence):
    someone = shop[0].external_userid
    set_customer(app, someone, birthday=birthday)
    rule_id = make_rule(app, admin, **BIRTHDAY)
    run_at(app, today)
    assert tasks(app, rule_id) == [(someone, occurrence)]


def test_a_leap_day_birthday_in_a_leap_year_waits_for_the_29th(app, shop, admin):
    someone = shop[0].external_userid
    set_customer(app, someone, birthday=date(1992, 2, 29))
    rule_id = make_rule(app, admin, **{**BIRTHDAY, "trigger_args": {"days_before": 1}})
    run_at(app, "2028-02-27 11:00")  # 2028 has a 29 February: 2 days away, not yet
    assert tasks(app, rule_id) == []
    run_at(app, "2028-02-28 11:00")
    assert tasks(app, rule_id) == [(someone, "birthday:2028")]


def test_birthdays_are_read_from_a_members_remark(app, corp, sim, shop, run_worker):
    someone = shop[0].external_userid
    corp.contacts[someone].follows["staff0201"].remark = "王女士 生日 5月12日"
    sim.contact_change("edit_external_contact", "staff0201", someone)
    run_worker()
    with app.app_context():
        birthday = db.session.scalar(select(Customer.birthday).where(Customer.external_userid == someone))
    assert birthday == date(1904, 5, 12)  # no year written: a leap year stands in for it


def test_the_follow_up_sequence_fires_on_days_1_3_and_7(app, corp, sim, shop, admin, run_worker):
    rule_id = make_rule(
        app,
        admin,
        name="新客跟进",
        trigger="added",
        trigger_args={"days": [1, 3, 7]},
        actions=[{"type": "remind", "text": "问候一下"}],
    )
    with app.app_context():  # the customers of the fixture were added long before the sequence's days
        db.session.execute(update(Customer).values(created_at=utcnow() - timedelta(days=60)))
        from bot.models import FollowRelation

        db.session.execute(update(FollowRelation).values(added_at=utcnow() - timedelta(days=60)))
        db.session.commit()
    with time_machine.travel(at("2026-03-09 21:30"), tick=False):  # added after the window, late on day 0
        newcomer, _ = sim.customer_adds(userid="staff0302")
        run_worker()
    seen = {}
    for day in range(10, 20):
        result = run_at(app, f"2026-03-{day:02d} 10:30")
        seen[day] = result.matched
    assert seen == {10: 1, 11: 0, 12: 1, 13: 0, 14: 0, 15: 0, 16: 1, 17: 0, 18: 0, 19: 0}
    occurrences = [o.split(":")[1] for _, o in tasks(app, rule_id)]
    assert occurrences == ["d1", "d3", "d7"] and {e for e, _ in tasks(app, rule_id)} == {newcomer.external_userid}
    assert len(cards(corp, "staff0302")) == 3


def test_a_missed_day_is_caught_up_once_and_the_next_step_is_not_skipped(app, sim, shop, admin, run_worker):
    rule_id = make_rule(
        app, admin, name="跟进", trigger="added", trigger_args={"days": [1, 3]}, actions=[{"type": "remind"}]
    )
    with time_machine.travel(at("2026-03-09 12:00"), tick=False):
        newcomer, _ = sim.customer_adds(userid="staff0201")
        run_worker()
    run_at(app, "2026-03-11 10:30")  # the scheduler was down on the 10th: day 1's task comes a day late
    run_at(app, "2026-03-12 10:30")  # day 3
    mine = [o.split(":")[1] for e, o in tasks(app, rule_id) if e == newcomer.external_userid]
    assert mine == ["d1", "d3"]


def test_dormant_customers_once_per_silence_with_a_cool_down(app, shop, admin):
    quiet, chatty = shop[0].external_userid, shop[1].external_userid
    with app.app_context():
        db.session.execute(update(Customer).values(last_interaction_at=utcnow()))
        db.session.commit()
    set_customer(app, quiet, last_interaction_at=datetime(2026, 5, 1, 2, 0))
    set_customer(app, chatty, last_interaction_at=datetime(2026, 6, 5, 2, 0))
    rule_id = make_rule(
        app,
        admin,
        when="2026-06-01 09:00",  # runs after the first look only at recent silences: this checks that path
        name="沉睡唤醒",
        trigger="dormant",
        trigger_args={"days": 30},
        actions=[{"type": "remind"}],
        cooldown_days=30,
    )
    run_at(app, "2026-06-10 10:30")
    assert tasks(app, rule_id) == [(quiet, "dormant:2026-05-01")]
    run_at(app, "2026-06-11 10:30")
    assert len(tasks(app, rule_id)) == 1  # the same silence: no second task
    # The quiet customer came back on 20 May, then went silent again: a new silence, but within the
    # 30-day cool-down of the first task (10 June) nothing happens until it ends.
    set_customer(app, quiet, last_interaction_at=datetime(2026, 5, 20, 2, 0))
    run_at(app, "2026-06-25 10:30")
    assert tasks(app, rule_id) == [(quiet, "dormant:2026-05-01")]
    run_at(app, "2026-07-11 10:30")  # 31 days after the first task; chatty has been silent 36 days too
    assert tasks(app, rule_id)[1:] == [(quiet, "dormant:2026-05-20"), (chatty, "dormant:2026-06-05")]


def test_interactions_are_recorded_and_move_the_customer_out_of_dormancy(app, sim, shop, admin, run_worker):
    someone = shop[0]
    with app.app_context():
        first = db.session.scalar(
            select(Customer.last_interaction_at).where(Customer.external_userid == someone.external_userid)
        )
    assert first is not None  # the add (and its welcome) count
    with app.app_context():
        tag_id = db.session.scalars(select(Tag.tag_id)).first()
    with time_machine.travel(datetime.now(SHANGHAI) + timedelta(days=2), tick=False):
        sim.member_tags_customer(someone.external_userid, "staff0201", [tag_id])
        run_worker()
    with app.app_context():
        later = db.session.scalar(
            select(Customer.last_interaction_at).where(Customer.external_userid == someone.external_userid)
        )
    assert later - first >= timedelta(days=2)


def test_a_tag_added_through_a_callback_triggers_a_rule_with_tags_of_its_own(app, corp, sim, shop, admin, run_worker):
    with app.app_context():
        vip, followed_up = db.session.scalars(select(Tag.tag_id).order_by(Tag.id)).all()[:2]
    make_rule(
        app,
        admin,
        name="新 VIP",
        trigger="tag_added",
        trigger_args={"tag_ids": [vip]},
        actions=[{"type": "remind", "text": "新 VIP"}, {"type": "tag", "add": [followed_up]}],
        window_start="00:00",
        window_end="24:00",
    )
    someone = shop[2].external_userid  # staff0202's
    sim.member_tags_customer(someone, "staff0202", [vip])
    run_worker()
    result = run_now(app)
    assert result.matched == 1 and result.reminded == 1 and len(result.tag_jobs) == 1
    from bot.services.tags.jobs import run_tag_job

    run_tag_job(result.tag_jobs[0])
    assert followed_up in corp.contacts[someone].follows["staff0202"].tag_ids
    assert run_now(app).matched == 0  # Siyu's own tag is not "a tag added" for this rule


def test_a_lost_customer_reminds_the_member_and_notifies_the_store_manager(app, corp, sim, shop, admin, run_worker):
    rule_id = make_rule(app, admin, **{**lifecycle.TEMPLATES["lost"], "window_start": "00:00", "window_end": "24:00"})
    leaving = shop[2].external_userid  # staff0202, in the store led by staff0201
    sim.customer_deletes_member(leaving, "staff0202")
    run_worker()
    result = run_now(app)
    assert result.matched == 1 and result.reminded == 1 and result.notified == 1
    assert [m["touser"] for m in cards(corp)] == ["staff0202", "staff0201"]
    assert cards(corp, "staff0201")[0]["textcard"]["title"] == "店长提醒：1 位客户"
    assert tasks(app, rule_id)[0][1].startswith("event:")


def test_audience_segment_and_a_deleted_segment_stop_the_rule(app, shop, admin, client):
    from bot.models import Segment

    a, b = shop[0].external_userid, shop[2].external_userid
    for e in (a, b):
        set_customer(app, e, birthday=date(1990, 12, 3))
    with app.app_context():
        segment = Segment(
            name="只有 staff0202", rule={"op": "and", "conditions": [{"type": "staff", "userids": ["staff0202"]}]}
        )
        db.session.add(segment)
        db.session.commit()
        segment_id = segment.id
    rule_id = make_rule(app, admin, **BIRTHDAY, segment_id=segment_id)
    run_at(app, "2026-12-01 10:30")
    assert tasks(app, rule_id) == [(b, "birthday:2026")]
    with app.app_context():
        db.session.delete(db.session.get(Segment, segment_id))
        db.session.commit()
    set_customer(app, a, birthday=date(1990, 12, 5))
    run_at(app, "2026-12-02 10:30")
    assert tasks(app, rule_id) == [(b, "birthday:2026")]  # not everyone: the rule stopped
    with app.app_context():
        last = db.session.scalars(select(RuleRun).order_by(RuleRun.id.desc())).first()
        assert (last.status, last.detail) == ("failed", "segment deleted")


def test_dry_run_says_who_and_why_and_writes_nothing(app, shop, admin):
    set_customer(app, shop[0].external_userid, birthday=date(1990, 12, 3))
    rule_id = make_rule(app, admin, **BIRTHDAY)
    with time_machine.travel(at("2026-12-01 08:00"), tick=False), app.app_context():
        rule = db.session.get(LifecycleRule, rule_id)
        answer = reports.dry_run(rule, db.session.get(User, admin))
        assert answer["count"] == 1 and answer["in_window"] is False
        (row,) = answer["customers"]
        assert row["why"] == "生日 12-03（2 天后）" and row["staff"] == "staff0201"
        assert db.session.scalar(select(func.count()).select_from(LifecycleTask)) == 0
