"""The assistant through the sandbox: a member's tasks of today and a customer's profile on request, the
store managers' daily digest, and who the managers of a store are."""

from datetime import datetime, timedelta

import time_machine
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import Staff
from tests.services.lifecycle_helpers import BIRTHDAY, SHANGHAI, make_rule, run_now, set_customer, soon


def test_the_assistant_answers_todays_tasks_and_a_customer_profile(app, corp, sim, shop, admin, run_worker):
    someone = shop[0]
    set_customer(app, someone.external_userid, birthday=soon(2))
    make_rule(app, admin, **{**BIRTHDAY, "window_start": "00:00", "window_end": "24:00"})
    run_now(app)
    sim.member_messages_app("staff0201", "今日任务")
    run_worker()
    text = corp.app_messages[-1]["text"]["content"]
    assert text.startswith("今日任务：1 位客户") and "生日关怀" in text and someone.name in text
    sim.member_messages_app("staff0201", f"客户 {someone.name}")
    run_worker()
    profile = corp.app_messages[-1]["text"]["content"]
    assert profile.startswith(someone.name) and f"生日：{soon(2):%m-%d}" in profile and "添加于" in profile
    sim.member_messages_app("staff0202", f"客户 {someone.name}")  # not their customer
    run_worker()
    assert "没有找到" in corp.app_messages[-1]["text"]["content"]
    sim.member_messages_app("staff0202", "今天天气如何")
    run_worker()
    assert corp.app_messages[-1]["text"]["content"].startswith("私域助手可以")


def test_daily_digest_reaches_each_store_manager_once_at_the_hour(app, corp, sim, shop, run_worker):
    from bot.services.assistant import digest

    sim.customer_deletes_member(shop[2].external_userid, "staff0202")
    run_worker()
    tomorrow = datetime.now(SHANGHAI).date() + timedelta(days=1)
    with app.app_context():
        db.session.commit()
        with time_machine.travel(
            datetime.combine(tomorrow, datetime.min.time(), SHANGHAI) + timedelta(hours=8), tick=False
        ):
            assert digest.send_digests() == {"not_the_hour": 1}
        with time_machine.travel(
            datetime.combine(tomorrow, datetime.min.time(), SHANGHAI) + timedelta(hours=9), tick=False
        ):
            assert digest.send_digests() == {"sent": 2, "already": 0, "failed": 0}
            assert digest.send_digests() == {"sent": 0, "already": 2, "failed": 0}
    texts = {
        m["touser"]: m["text"]["content"]
        for m in corp.app_messages
        if "私域日报" in m.get("text", {}).get("content", "")
    }
    assert set(texts) == {"staff0201", "staff0301"}
    assert "新增客户 4，流失 1" in texts["staff0201"] and "新增客户 4，流失 0" in texts["staff0301"]


def test_members_of_a_store_and_its_managers(app, ctx, shop):
    from bot.models import Store

    leaders = {s.name: s.leaders for s in db.session.scalars(select(Store)) if s.leaders}
    assert sorted(u for group in leaders.values() for u in group) == ["staff0201", "staff0301"]
    assert db.session.scalar(select(func.count()).select_from(Staff)) == 4
