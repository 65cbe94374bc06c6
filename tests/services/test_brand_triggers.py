"""Lifecycle rules on the brand's purchases: a first purchase (an event when a customer's first paid order
arrives, recent ones only), N days since the last purchase (one task per silence), a level changed (up, down,
to a level), a spend in the window reaching an amount (once per crossing), with their reasons; and a paid
order after a task counted as converted when the rule says so."""

from datetime import timedelta

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import Customer, CustomerEvent, LifecycleRule, LifecycleTask, MembershipLevel, User
from bot.models._time import utcnow
from bot.services.commerce import imports
from bot.services.lifecycle import reports
from tests.services.lifecycle_helpers import cards, make_rule, run_now, tasks

ALL_DAY = {"window_start": "00:00", "window_end": "24:00"}


def bought(app, external_userid, order_no, days_ago):
    paid = (utcnow() - timedelta(days=days_ago)).isoformat() + "+00:00"
    with app.app_context():
        row = {"order_no": order_no, "external_userid": external_userid, "store": 2, "amount": 99, "paid_at": paid}
        report = imports.import_orders([row], None)
        db.session.commit()
        assert report.matched == 1


def test_a_first_purchase_reminds_the_member_once(app, corp, shop, admin):
    rule_id = make_rule(
        app,
        admin,
        name="首单关怀",
        trigger="first_purchase",
        actions=[{"type": "remind", "text": "感谢首单"}],
        **ALL_DAY,
    )
    newcomer, old_buyer = shop[0].external_userid, shop[1].external_userid
    bought(app, old_buyer, "OLD-1", days_ago=200)  # history imported late: not news
    bought(app, newcomer, "NEW-1", days_ago=0)
    bought(app, newcomer, "NEW-2", days_ago=0)  # a second order is not a first purchase
    with app.app_context():
        dry = reports.dry_run(db.session.get(LifecycleRule, rule_id), db.session.get(User, admin))
        assert dry["count"] == 1 and dry["customers"][0]["why"].endswith("首次消费")
    result = run_now(app)
    assert result.matched == 1 and [c for c, _ in tasks(app, rule_id)] == [newcomer]
    assert cards(corp, "staff0201")
    with app.app_context():
        kinds = db.session.scalars(
            select(CustomerEvent.kind).join(Customer).where(Customer.external_userid == newcomer)
        ).all()
        assert kinds.count("first_purchase") == 1


def test_days_without_a_purchase_make_one_task_per_silence_with_the_reason(app, shop, admin):
    quiet, recent = shop[0].external_userid, shop[2].external_userid
    bought(app, quiet, "Q-1", days_ago=100)
    bought(app, recent, "R-1", days_ago=10)
    rule_id = make_rule(
        app,
        admin,
        name="90 天未消费",
        trigger="no_purchase",
        trigger_args={"days": 90},
        actions=[{"type": "remind", "text": "回访"}],
        **ALL_DAY,
    )
    with app.app_context():
        rule = db.session.get(LifecycleRule, rule_id)
        dry = reports.dry_run(rule, db.session.get(User, admin))
        assert dry["count"] == 1 and dry["customers"][0]["why"].startswith("已 100 天没有消费")
    run_now(app)
    run_now(app)
    ((customer, occurrence),) = tasks(app, rule_id)
    assert customer == quiet and occurrence.startswith("no_purchase:")


# -- level changed, spend crossed, a purchase as a conversion: through the API's batches ---------------------


def ladder(app):
    with app.app_context():
        levels = [
            MembershipLevel(code="silver", name="银卡", rank=1),
            MembershipLevel(code="gold", name="金卡", rank=2),
            MembershipLevel(code="black", name="黑金", rank=3),
        ]
        db.session.add_all(levels)
        db.session.commit()
        return {lv.code: lv.id for lv in levels}


def post(api, url, rows):
    answer = api.post(url, {"rows": rows})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["refused"] == 0, answer.get_json()
    return answer.get_json()


def member(no, external_userid, level):
    return {"member_no": no, "external_userid": external_userid, "level": level}


def paid(no, external_userid, amount, days_ago=0, status="paid"):
    at = (utcnow() - timedelta(days=days_ago)).isoformat() + "+00:00"
    return {
        "order_no": no,
        "external_userid": external_userid,
        "store": 2,
        "amount": amount,
        "paid_at": at,
        "status": status,
    }


def test_level_changed_fires_on_the_direction_and_level_chosen_once_per_change(app, api, shop, admin):
    levels = ladder(app)
    a, b, c = (x.external_userid for x in shop[:3])
    post(api, "/api/v1/memberships", [member("M1", a, "silver"), member("M2", b, "gold"), member("M3", c, "gold")])
    up_to_gold = make_rule(
        app,
        admin,
        name="升级金卡",
        trigger="level_changed",
        trigger_args={"direction": "up", "level_id": levels["gold"]},
        actions=[{"type": "remind", "text": "恭喜升级"}],
        **ALL_DAY,
    )
    any_down = make_rule(
        app,
        admin,
        name="降级关怀",
        trigger="level_changed",
        trigger_args={"direction": "down"},
        actions=[{"type": "remind", "text": "降级了"}],
        **ALL_DAY,
    )
    # joined before the rules were on: not news for them
    assert run_now(app).matched == 0
    post(api, "/api/v1/memberships", [member("M1", a, "gold"), member("M2", b, "silver"), member("M3", c, "black")])
    post(api, "/api/v1/memberships", [member("M1", a, "gold")])  # sent again: no change, no second task
    with app.app_context():
        dry = reports.dry_run(db.session.get(LifecycleRule, up_to_gold), db.session.get(User, admin))
        assert dry["count"] == 1 and dry["customers"][0]["why"].endswith("会员升级为「金卡」")
    run_now(app)
    run_now(app)
    assert [cust for cust, _ in tasks(app, up_to_gold)] == [a]  # c went up, but to black
    assert [cust for cust, _ in tasks(app, any_down)] == [b]
    # down and up again: a new change, a new task
    post(api, "/api/v1/memberships", [member("M1", a, "silver")])
    post(api, "/api/v1/memberships", [member("M1", a, "gold")])
    run_now(app)
    assert [cust for cust, _ in tasks(app, up_to_gold)] == [a, a]
    assert [cust for cust, _ in tasks(app, any_down)] == [b, a]


def test_a_bad_level_trigger_or_amount_is_refused_with_its_field(app, api, shop):
    for args, field in [
        ({"direction": "sideways"}, "trigger_args.direction"),
        ({"direction": "up", "level_id": 999}, "trigger_args.level_id"),
    ]:
        body = {"name": "x", "trigger": "level_changed", "trigger_args": args, "actions": [{"type": "remind"}]}
        answer = api.post("/api/v1/rules", body)
        assert answer.status_code == 400 and answer.get_json()["error"]["field"] == field
    for amount in (0, -5, "1000", 1.5, 10**9):
        body = {
            "name": "x",
            "trigger": "spend_crossed",
            "trigger_args": {"amount": amount},
            "actions": [{"type": "remind"}],
        }
        answer = api.post("/api/v1/rules", body)
        assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "trigger_args.amount"


def test_spend_crossing_an_amount_fires_once_per_crossing(app, api, shop, admin):
    a, b = shop[0].external_userid, shop[1].external_userid
    post(api, "/api/v1/orders", [paid("S0", b, 800, days_ago=30)])
    rule_id = make_rule(
        app,
        admin,
        name="消费满千",
        trigger="spend_crossed",
        trigger_args={"amount": 1000},
        actions=[{"type": "remind", "text": "升级为高价值客户"}],
        **ALL_DAY,
    )
    post(api, "/api/v1/orders", [paid("S1", a, 600)])
    run_now(app)
    assert tasks(app, rule_id) == []  # 600 < 1000
    post(api, "/api/v1/orders", [paid("S2", a, 500), paid("S3", b, 100)])  # a: 1100 crosses; b: 900 does not
    post(api, "/api/v1/orders", [paid("S4", a, 300)])  # a is above already: no new crossing
    with app.app_context():
        dry = reports.dry_run(db.session.get(LifecycleRule, rule_id), db.session.get(User, admin))
        assert dry["count"] == 1 and dry["customers"][0]["why"].endswith("窗口内消费达到 ¥1,000")
    run_now(app)
    run_now(app)
    assert [c for c, _ in tasks(app, rule_id)] == [a]
    # a refund takes a below the amount; a new purchase crosses it again: a second task
    post(api, "/api/v1/orders", [paid("S2", a, 500, status="refunded")])  # 900
    post(api, "/api/v1/orders", [paid("S5", a, 200)])  # 1100
    run_now(app)
    assert [c for c, _ in tasks(app, rule_id)] == [a, a]


def test_a_rule_may_count_a_purchase_after_its_task_as_converted(app, api, shop, admin):
    a = shop[0].external_userid
    rule_ids = [
        make_rule(
            app,
            admin,
            name=f"首单 {converts}",
            trigger="first_purchase",
            actions=[{"type": "remind", "text": "感谢"}],
            purchase_converts=converts,
            **ALL_DAY,
        )
        for converts in (False, True)
    ]
    post(api, "/api/v1/orders", [paid("C1", a, 50)])
    run_now(app)
    with app.app_context():
        created = db.session.scalar(select(func.min(LifecycleTask.created_at)))
    # the second purchase comes after the tasks (its paid_at a minute later)
    later = (created + timedelta(minutes=1)).isoformat() + "+00:00"
    post(api, "/api/v1/orders", [{**paid("C2", a, 80), "paid_at": later}])
    assert [len(tasks(app, rid)) for rid in rule_ids] == [1, 1]
    answers = [api.get(f"/api/v1/rules/{rid}").get_json() for rid in rule_ids]
    assert [r["purchase_converts"] for r in answers] == [False, True]
    assert [r["results"]["converted"] for r in answers] == [0, 1]


def test_the_panel_form_sets_the_level_and_spend_triggers_and_the_purchase_option(app, client, api, shop):
    from tests.admin.panel import post_form
    from tests.admin.test_panel import signed_in

    levels = ladder(app)
    signed_in(app, client, "admin")
    form = {
        "name": "升级金卡",
        "trigger": "level_changed",
        "level_direction": "up",
        "level_id": str(levels["gold"]),
        "remind": "1",
        "remind_text": "恭喜",
        "window_start": "10:00",
        "window_end": "20:00",
        "purchase_converts": "1",
    }
    assert post_form(client, "/admin/lifecycle", "/admin/lifecycle", form).status_code == 302
    spend = {**form, "name": "消费满千", "trigger": "spend_crossed", "spend_amount": "1000"}
    spend.pop("purchase_converts")
    assert post_form(client, "/admin/lifecycle", "/admin/lifecycle", spend).status_code == 302
    with app.app_context():
        rules = {r.name: r for r in db.session.scalars(select(LifecycleRule))}
        level_rule, spend_rule = rules["升级金卡"], rules["消费满千"]
        assert level_rule.trigger_args == {"direction": "up", "level_id": levels["gold"]}
        assert level_rule.purchase_converts is True
        assert spend_rule.trigger_args == {"amount": 1000} and spend_rule.purchase_converts is False
        rule_id = level_rule.id
    page = client.get(f"/admin/lifecycle/{rule_id}").get_data(as_text=True)
    assert f'value="{levels["gold"]}" selected' in page and 'id="purchase-converts" checked' in page
    listed = client.get("/admin/lifecycle").get_data(as_text=True)
    assert "会员等级变化" in listed and "消费金额达到" in listed
    bad = post_form(client, "/admin/lifecycle", "/admin/lifecycle", {**spend, "spend_amount": "0"})
    assert bad.status_code == 400 and "消费金额应为" in bad.get_data(as_text=True)
