"""The staff workspace behind the sidebar: what a member sees of the customer in front of them (and of nobody
else), their writes (tags through mark_tag, birthday and notes, tasks), the group view and the app home —
through real callbacks and the fake WeCom."""

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Customer, CustomerEvent, LifecycleTask, Staff
from bot.models._time import utcnow
from bot.services import corp_time
from bot.services.errors import Conflict, Invalid, NotFound
from bot.services.workspace import actions, members
from bot.services.workspace.customer_view import customer_view, days_to_birthday
from bot.services.workspace.group_view import group_view
from bot.services.workspace.home import home
from tests.conftest import customers_of, make_user
from tests.services.lifecycle_helpers import make_rule
from tests.services.test_deleted_tags import tag_named


@pytest.fixture
def people(app, sim, corp, run_worker):
    """Two customers of staff0201, two of staff0202 (same store), two of staff0301 (another store)."""
    return customers_of(app, sim, run_worker, ["staff0201", "staff0202", "staff0301"])


def staff(userid):
    return db.session.scalar(select(Staff).where(Staff.userid == userid))


def test_a_member_sees_only_the_customers_they_follow(app, people):
    mine, _mine2, colleagues, *_ = people
    with app.app_context():
        view = customer_view(staff("staff0201"), mine.external_userid)
        assert view.customer.external_userid == mine.external_userid and view.follow.staff.userid == "staff0201"
        # a colleague of the same store, and a stranger: both "not found", with nothing about the customer
        for userid, customer in (("staff0201", colleagues), ("staff0301", mine)):
            with pytest.raises(NotFound) as refused:
                customer_view(staff(userid), customer.external_userid)
            assert customer.external_userid not in refused.value.text() and customer.name not in refused.value.text()
        with pytest.raises(NotFound):
            customer_view(staff("staff0201"), "wm-nobody")


def test_a_shared_customer_shows_who_else_follows_them_and_a_lost_one_is_no_longer_mine(app, sim, run_worker, people):
    mine = people[0]
    sim.customer_adds_another(mine.external_userid, "staff0301")
    run_worker()
    with app.app_context():
        view = customer_view(staff("staff0201"), mine.external_userid)
        assert [o.staff.userid for o in view.others] == ["staff0301"]
        assert any(e["kind"] == "added" for e in view.timeline)
    sim.customer_deletes_member(mine.external_userid, "staff0201")
    run_worker()
    with app.app_context(), pytest.raises(NotFound):
        customer_view(staff("staff0201"), mine.external_userid)


def test_tagging_from_the_sidebar_calls_wecom_mirrors_at_once_and_is_audited_as_the_member(app, corp, people):
    mine = people[0]
    vip, old = tag_named(corp, "VIP"), tag_named(corp, "老客")
    with app.app_context():
        actions.tag(staff("staff0201"), mine.external_userid, [vip, old], [])
        db.session.commit()
        assert customer_view(staff("staff0201"), mine.external_userid).my_tag_ids == {vip, old}
        actions.tag(staff("staff0201"), mine.external_userid, [], [old])
        db.session.commit()
        assert customer_view(staff("staff0201"), mine.external_userid).my_tag_ids == {vip}
        notes = db.session.execute(
            select(AuditEntry.actor, AuditEntry.action).where(AuditEntry.action == "sidebar_tag_customer")
        ).all()
    assert corp.contacts[mine.external_userid].follows["staff0201"].tag_ids == [vip]
    assert notes == [("member:staff0201", "sidebar_tag_customer")] * 2
    # a customer of someone else cannot be tagged through the sidebar
    with app.app_context(), pytest.raises(NotFound):
        actions.tag(staff("staff0301"), mine.external_userid, [vip], [])


def test_birthday_and_notes_are_shared_with_the_panel_and_name_the_member(app, people):
    mine = people[0]
    with app.app_context():
        birthday = corp_time.today() + timedelta(days=2)
        actions.edit_profile(
            staff("staff0201"), mine.external_userid, birthday=birthday.replace(year=1990), notes=" 爱喝拿铁 "
        )
        db.session.commit()
        customer = db.session.scalar(select(Customer).where(Customer.external_userid == mine.external_userid))
        assert customer.notes == "爱喝拿铁" and customer.birthday == birthday.replace(year=1990)
        event = db.session.scalar(select(CustomerEvent).where(CustomerEvent.kind == "profile_edited"))
        assert event.staff_userid == "staff0201" and event.detail == "birthday,notes"
        view = customer_view(staff("staff0201"), mine.external_userid)
        assert view.birthday_in == 2 and [s.kind for s in view.todo] == ["birthday"]
        assert [(c.external_userid, days) for c, _f, days in home(staff("staff0201")).birthdays] == [
            (mine.external_userid, 2)
        ]
        with pytest.raises(Invalid):
            actions.edit_profile(staff("staff0201"), mine.external_userid, birthday=None, notes="很长" * 1001)
        with pytest.raises(Invalid) as refused:
            actions.edit_profile(staff("staff0201"), mine.external_userid, birthday=date(1, 1, 1), notes="")
        assert refused.value.field == "birthday"


@pytest.mark.parametrize(
    ("birthday", "today", "days"),
    [
        ("1990-12-03", "2026-12-01", 2),
        ("1990-12-01", "2026-12-01", 0),
        ("1990-11-30", "2026-12-01", 364),
        ("1992-02-29", "2027-02-27", 1),  # kept on 28 February in other years
        ("1992-02-29", "2028-02-28", 1),  # a leap year has its own 29th
    ],
)
def test_days_to_the_next_birthday(birthday, today, days):

    assert days_to_birthday(date.fromisoformat(birthday), date.fromisoformat(today)) == days


def _task(app, admin, customer, userid, created=None):
    rule_id = make_rule(
        app,
        admin,
        name=f"跟进 {customer.name}",
        trigger="dormant",
        trigger_args={"days": 30},
        actions=[{"type": "remind", "text": "打个电话问候一下"}],
    )
    with app.app_context():
        row = db.session.scalar(select(Customer).where(Customer.external_userid == customer.external_userid))
        task = LifecycleTask(
            rule_id=rule_id,
            customer_id=row.id,
            occurrence="t",
            staff_id=staff(userid).id,
            remind="done",
            created_at=created or utcnow(),
        )
        db.session.add(task)
        db.session.commit()
        return task.id


def test_open_tasks_are_what_to_do_now_and_a_member_closes_only_their_own_once(app, people):
    mine = people[0]
    admin, _ = make_user(app, "ws-admin", "admin")
    task_id = _task(app, admin, mine, "staff0201")
    old_id = _task(app, admin, mine, "staff0201", created=utcnow() - timedelta(days=40))
    with app.app_context():
        view = customer_view(staff("staff0201"), mine.external_userid)
        assert [(s.kind, s.task_id, s.text) for s in view.todo] == [("task", task_id, "打个电话问候一下")]
        assert old_id not in [t.id for t in view.tasks]  # history, not something to do now
        with pytest.raises(NotFound):
            actions.close_task(staff("staff0202"), task_id, "done")
        with pytest.raises(Invalid):
            actions.close_task(staff("staff0201"), task_id, "later")
        actions.close_task(staff("staff0201"), task_id, "done")
        db.session.commit()
        with pytest.raises(Conflict):
            actions.close_task(staff("staff0201"), task_id, "skipped")
        assert customer_view(staff("staff0201"), mine.external_userid).todo == []
        assert db.session.get(LifecycleTask, task_id).outcome == "done"
        assert db.session.scalar(select(AuditEntry.actor).where(AuditEntry.action == "sidebar_task_done")) == (
            "member:staff0201"
        )


def test_a_quiet_customer_needs_attention(app, people):
    mine = people[0]
    with app.app_context():
        row = db.session.scalar(select(Customer).where(Customer.external_userid == mine.external_userid))
        row.last_interaction_at = utcnow() - timedelta(days=45)
        db.session.commit()
        view = customer_view(staff("staff0201"), mine.external_userid)
        assert view.quiet_days == 45 and [s.kind for s in view.todo] == ["quiet"]
        quiet = home(staff("staff0201")).quiet
        assert [(c.external_userid, days) for c, _f, days in quiet] == [(mine.external_userid, 45)]
        assert home(staff("staff0202")).quiet == []


def test_a_group_is_seen_by_its_owner_and_members_only_and_maps_the_customers_i_follow(app, sim, run_worker, people):
    mine, _m2, colleagues, _c2, stranger, _s2 = people
    group, _ = sim.member_creates_group(
        "staff0201", "会员福利群", [mine.external_userid, colleagues.external_userid], members=["staff0202"]
    )
    run_worker()
    with app.app_context():
        owner_view = group_view(staff("staff0201"), group.chat_id)
        by_name = {m["stay"].userid: m for m in owner_view.members}
        assert by_name[mine.external_userid]["customer"] is not None
        # a customer the owner does not follow is in the list, but opens no profile and shows no tags
        assert by_name[colleagues.external_userid]["customer"] is None
        assert group_view(staff("staff0202"), group.chat_id).group.chat_id == group.chat_id
        with pytest.raises(NotFound):
            group_view(staff("staff0301"), group.chat_id)
    assert stranger  # the third member's customers are not in the group


def test_the_home_shows_my_tasks_code_and_rank(app, people):
    mine = people[0]
    admin, _ = make_user(app, "home-admin", "admin")
    task_id = _task(app, admin, mine, "staff0201")
    with app.app_context():
        from bot.services.channels.codes import create_personal_code

        create_personal_code(staff("staff0201"))
        db.session.commit()
        h = home(staff("staff0201"))
        assert [t.id for t, _c in h.tasks] == [task_id]
        assert h.code is not None and h.code.owner_staff_id == staff("staff0201").id
        place, ranked, row = h.rank
        assert row["userid"] == "staff0201" and 1 <= place <= ranked and row["net"] == 2
        other = home(staff("staff0301"))
        assert other.tasks == [] and other.code is None


def test_identify_refuses_what_is_not_an_active_member(app, people):
    with app.app_context():
        assert members.active_member("staff0201").userid == "staff0201"
        staff("staff0202").active = False
        db.session.commit()
        for userid in ("staff0202", "", "wm-a-customer"):
            with pytest.raises(members.NotAMember):
                members.active_member(userid)
        with pytest.raises(members.CodeRefused):
            members.identify("")
