"""Segments: rules evaluated by the database, explained per condition, scoped, exported; hostile input is data."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, literal, select, update

from bot.extensions import db
from bot.models import Channel, Customer, FollowRelation, Store
from bot.models._time import utcnow
from bot.services.segments import rules as segments
from tests.conftest import make_token, make_user
from tests.services.test_acquisition import new_channel


@pytest.fixture
def crowd(app, api, sim, corp, run_worker):
    """Six customers: three of staff0201 (静安寺店) — two VIP, one of them also 护肤 — one of staff0202
    brought by a channel, one of staff0301 (another store) who left, one with a birthday in 5 days."""
    tag = {name: t for t, (_, name) in corp.tag_index().items()}
    channel = new_channel(api, corp, tag_ids=[])
    people = [sim.customer_adds(userid="staff0201")[0] for _ in range(3)]
    people.append(sim.scan(channel["config_id"])[0])
    people.append(sim.customer_adds(userid="staff0301")[0])
    people.append(sim.customer_adds(userid="staff0302")[0])
    run_worker()
    sim.member_tags_customer(people[0].external_userid, "staff0201", [tag["VIP"], tag["护肤"]])
    sim.member_tags_customer(people[1].external_userid, "staff0201", [tag["VIP"]])
    sim.customer_deletes_member(people[4].external_userid, "staff0301")
    run_worker()
    with app.app_context():
        soon = utcnow().date() + timedelta(days=5)
        db.session.execute(
            update(Customer)
            .where(Customer.external_userid == people[5].external_userid)
            .values(birthday=date(1990, soon.month, min(soon.day, 28)))
        )
        db.session.commit()
    return {"people": people, "tag": tag, "channel": channel}


def ids(res):
    return sorted(m["external_userid"] for m in res)


def test_tag_conditions_any_all_none(api, crowd):
    p, t = crowd["people"], crowd["tag"]
    rule = {"op": "and", "conditions": [{"type": "tags", "match": "all", "tag_ids": [t["VIP"], t["护肤"]]}]}
    assert api.post("/api/v1/segments/preview", {"rule": rule}).get_json()["count"] == 1
    rule["conditions"][0]["match"] = "any"
    assert api.post("/api/v1/segments/preview", {"rule": rule}).get_json()["count"] == 2
    rule["conditions"][0]["match"] = "none"
    assert api.post("/api/v1/segments/preview", {"rule": rule}).get_json()["count"] == len(p) - 2


def test_a_saved_segment_counts_explains_pages_and_exports(api, crowd, client, app):
    p, t = crowd["people"], crowd["tag"]
    rule = {
        "op": "and",
        "conditions": [
            {"type": "staff", "userids": ["staff0201", "staff0202"]},
            {"type": "tags", "match": "any", "tag_ids": [t["VIP"]]},
            {"type": "lost", "value": False},
        ],
    }
    res = api.post("/api/v1/segments", {"name": "静安 VIP", "rule": rule})
    assert res.status_code == 201 and res.get_json()["count"] == 2
    sid = res.get_json()["id"]
    explained = api.get(f"/api/v1/segments/{sid}/count").get_json()
    assert [(s["alone"], s["combined"]) for s in explained["steps"]] == [(4, 4), (2, 2), (5, 2)]
    assert explained["in_scope"] == 6 and explained["count"] == 2
    first = api.get(f"/api/v1/segments/{sid}/members?limit=1").get_json()
    second = api.get(f"/api/v1/segments/{sid}/members?limit=1&after={first['next_after']}").get_json()
    assert ids(first["items"] + second["items"]) == sorted([p[0].external_userid, p[1].external_userid])
    csv = api.get(f"/api/v1/segments/{sid}/members.csv").get_data(as_text=True)
    assert csv.startswith("\ufeffexternal_userid,name") and p[0].external_userid in csv
    why = api.get(f"/api/v1/segments/{sid}/why/{p[2].external_userid}").get_json()
    assert why["member"] is False and [c["holds"] for c in why["conditions"]] == [True, False, True]


def test_attribute_conditions(api, crowd, app):
    p = crowd["people"]
    with app.app_context():
        jingan = db.session.scalar(select(Store.id).where(Store.name == "静安寺店"))
        channel_id = db.session.scalar(select(Channel.id))

    def count(*conditions, op="and"):
        res = api.post("/api/v1/segments/preview", {"rule": {"op": op, "conditions": list(conditions)}})
        assert res.status_code == 200, res.get_json()
        return res.get_json()["count"]

    today = utcnow().date()
    assert count({"type": "store", "store_ids": [jingan]}) == 4
    assert count({"type": "channel", "channel_ids": [channel_id]}) == 1
    assert count({"type": "lost", "value": True}) == 1
    assert count({"type": "birthday_within", "days": 7}) == 1
    assert count({"type": "birthday_within", "days": 2}) == 0
    soon = today + timedelta(days=5)
    assert count({"type": "birthday_month", "month": soon.month}) == 1
    assert count({"type": "added", "after": today.isoformat()}) == len(p)
    assert count({"type": "added", "before": (today - timedelta(days=1)).isoformat()}) == 0
    assert count({"type": "inactive_days", "days": 3}) == 0
    assert count({"type": "stage", "stage": "new"}) == len(p) - 1 and count({"type": "stage", "stage": "lost"}) == 1
    with app.app_context():  # 40 days later: everyone still followed is dormant
        db.session.execute(update(Customer).values(last_interaction_at=utcnow() - timedelta(days=40)))
        db.session.execute(update(FollowRelation).values(added_at=utcnow() - timedelta(days=40)))
        db.session.commit()
    assert count({"type": "inactive_days", "days": 30}) == len(p)
    assert count({"type": "stage", "stage": "dormant"}) == len(p) - 1
    assert count({"type": "stage", "stage": "active"}) == 0
    assert count({"type": "lost", "value": True}, {"type": "channel", "channel_ids": [channel_id]}, op="or") == 2


HOSTILE = [
    "' OR 1=1 --",
    '"; DROP TABLE customers; --',
    "%') UNION SELECT external_userid FROM customers --",
    "客户\u202e标签\u200b",
    "x" * 64,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_data(api, crowd, app, value):
    rule = {"conditions": [{"type": "tags", "match": "any", "tag_ids": [value]}]}
    res = api.post("/api/v1/segments/preview", {"rule": rule})
    assert res.status_code == 200 and res.get_json()["count"] == 0
    rule = {"conditions": [{"type": "staff", "userids": [value]}]}
    assert api.post("/api/v1/segments/preview", {"rule": rule}).get_json()["count"] == 0
    saved = api.post("/api/v1/segments", {"name": value[:64], "rule": rule})
    assert saved.status_code == 201 and saved.get_json()["name"] == value[:64].strip()
    with app.app_context():
        assert db.session.scalar(select(Customer.id).limit(1)) is not None  # the table is still there


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("all", "rule: Input should be a valid dictionary"),
        ({"op": "xor", "conditions": []}, "rule.op: Input should be 'and' or 'or'"),
        ({"conditions": [{"type": "sql", "where": "1=1"}]}, "rule.conditions[0]: 未知的条件类型"),
        ({"conditions": [{"type": "tags", "match": "some", "tag_ids": ["a"]}]}, "rule.conditions[0]:"),
        ({"conditions": [{"type": "tags", "tag_ids": ["x" * 65]}]}, "rule.conditions[0]: 取值应为 1–64 个字符的文本"),
        ({"conditions": [{"type": "tags", "tag_ids": []}]}, "rule.conditions[0]: 需要 1–500 个取值"),
        ({"conditions": [{"type": "store", "store_ids": ["1 OR 1=1"]}]}, "rule.conditions[0]: 取值应为整数"),
        ({"conditions": [{"type": "birthday_within", "days": 10**9}]}, "rule.conditions[0]: 数值超出范围"),
        ({"conditions": [{"type": "added", "after": "yesterday"}]}, "rule.conditions[0]: 日期格式应为 YYYY-MM-DD"),
        ({"conditions": [{"type": "lost", "value": "yes"}]}, "rule.conditions[0]: 取值应为是或否"),
        ({"conditions": [{"type": "staff", "userids": ["a\u0000b"]}]}, "text may not contain NUL characters"),
        ({"conditions": [{"type": "lost", "value": True}] * 21}, "rule.conditions: List should have at most 20 items"),
    ],
)
def test_bad_rules_are_400_naming_the_condition(api, rule, message):
    res = api.post("/api/v1/segments/preview", {"rule": rule})
    assert res.status_code == 400 and res.get_json()["error"]["message"].startswith(message)


def test_segments_are_scoped_and_only_writers_save(app, api, crowd, client):
    rule = {"conditions": [{"type": "lost", "value": False}]}
    sid = api.post("/api/v1/segments", {"name": "全部在册", "rule": rule}).get_json()["id"]
    manager = {"Authorization": f"Bearer {make_token(app, make_user(app, 'm2', 'store_manager', [2])[0])}"}
    assert client.get(f"/api/v1/segments/{sid}", headers=manager).get_json()["count"] == 4
    other = crowd["people"][5].external_userid  # followed in the other store
    assert client.get(f"/api/v1/segments/{sid}/why/{other}", headers=manager).status_code == 403
    csv = client.get(f"/api/v1/segments/{sid}/members.csv", headers=manager).get_data(as_text=True)
    assert other not in csv and len(csv.strip().splitlines()) == 5
    assert client.post("/api/v1/segments", json={"name": "x", "rule": rule}, headers=manager).status_code == 403
    assert client.delete(f"/api/v1/segments/{sid}", headers=manager).status_code == 403
    assert api.delete(f"/api/v1/segments/{sid}").status_code == 200
    assert api.get(f"/api/v1/segments/{sid}").status_code == 404


def test_a_formula_name_is_exported_as_text(app, api, sim, run_worker):
    contact, _ = sim.customer_adds(userid="staff0201")
    run_worker()
    with app.app_context():
        db.session.execute(update(Customer).values(name='=HYPERLINK("http://evil","点我")'))
        db.session.commit()
    sid = api.post("/api/v1/segments", {"name": "all", "rule": {"conditions": []}}).get_json()["id"]
    csv = api.get(f"/api/v1/segments/{sid}/members.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in csv


def test_upcoming_birthdays_cross_the_new_year():
    assert segments._upcoming_birthdays(3, date(2026, 12, 30)) == [101, 102, 1230, 1231]


def test_the_panel_saves_previews_and_refuses_hostile_or_broken_rules(app, crowd):
    from tests.admin.panel import csrf_from, post_form, sign_in

    browser = app.test_client()
    sign_in(browser, "op", make_user(app, "op", "operator")[1])
    token = csrf_from(browser.get("/admin/segments").get_data(as_text=True))
    headers = {"X-CSRFToken": token}
    for value in HOSTILE:
        rule = {"op": "and", "conditions": [{"type": "tags", "match": "all", "tag_ids": [value]}]}
        res = browser.post("/admin/segments/preview", json={"rule": rule}, headers=headers)
        assert res.status_code == 200 and res.get_json()["count"] == 0
    bad = browser.post("/admin/segments/preview", json={"rule": {"conditions": [{"type": "x"}]}}, headers=headers)
    assert bad.status_code == 400 and bad.get_json() == {"error": "未知的条件类型", "index": 0}
    assert browser.post("/admin/segments/preview", json={"rule": {}}).status_code == 400  # no CSRF token
    broken = post_form(browser, "/admin/segments", "/admin/segments", {"name": "x", "rule": "{not json"})
    assert broken.status_code == 400 and "规则无法读取" in broken.get_data(as_text=True)
    rule = '{"op": "and", "conditions": [{"type": "lost", "value": false}]}'
    saved = post_form(
        browser, "/admin/segments", "/admin/segments", {"name": "<script>alert(1)</script>", "rule": rule}
    )
    assert saved.status_code == 302
    page = browser.get("/admin/segments").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    viewer = app.test_client()
    sign_in(viewer, "v", make_user(app, "v", "viewer")[1])
    assert post_form(viewer, "/admin/segments", "/admin/segments", {"name": "y", "rule": rule}).status_code == 403


def test_the_profile_says_why_a_customer_is_in_or_out(app, api, crowd):
    from tests.admin.panel import sign_in

    p, t = crowd["people"], crowd["tag"]
    rule = {"conditions": [{"type": "tags", "match": "any", "tag_ids": [t["VIP"]]}, {"type": "lost", "value": False}]}
    sid = api.post("/api/v1/segments", {"name": "VIP 在册", "rule": rule}).get_json()["id"]
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    inside = browser.get(f"/admin/customers/{p[0].external_userid}?segment={sid}").get_data(as_text=True)
    assert "在分群「VIP 在册」内" in inside and inside.count("✓") == 2
    outside = browser.get(f"/admin/customers/{p[2].external_userid}?segment={sid}").get_data(as_text=True)
    assert "不在分群「VIP 在册」内" in outside and "✗ 标签" in outside


def test_the_service_refuses_nul_in_ids_whatever_the_caller():
    with pytest.raises(segments.RuleError, match="取值含有空字符"):
        segments.parse_rule({"conditions": [{"type": "staff", "userids": ["a\x00b"]}]})


@pytest.fixture(params=[True, False], ids=["chunked rows", "named cursor"])
def chunked(request, monkeypatch):
    """PostgreSQL streams in chunked-rows mode where libpq has it (17+), else from a named cursor: both ways."""
    import psycopg

    monkeypatch.setattr(psycopg.capabilities, "has_stream_chunked", lambda check=False: request.param)
    return request.param


def test_stream_yields_every_member_in_order(app, crowd, chunked):
    everyone = segments.parse_rule({"conditions": []})
    with app.app_context():
        expected = db.session.execute(select(Customer.external_userid, Customer.name).order_by(Customer.id)).all()
        assert len(expected) == 6
        streamed = segments.stream(segments.member_rows(everyone, None), batch=4)
        assert [tuple(r) for r in streamed] == [tuple(r) for r in expected]


def test_a_stream_left_half_way_frees_the_connection(app, chunked):
    numbers = select(literal(1).label("n")).cte("numbers", recursive=True)
    numbers = numbers.union_all(select(numbers.c.n + 1).where(numbers.c.n < 2_000_000))
    with app.app_context():
        rows = segments.stream(select(numbers.c.n), batch=1000)
        assert [next(rows)[0] for _ in range(1500)] == list(range(1, 1501))
        rows.close()  # the client went away half-way through an export
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Customer)) == 0


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1899-12-31", "2101-01-01"])
def test_a_date_out_of_range_is_refused_naming_the_condition(day):
    from bot.services.segments.rules import RuleError, parse_rule

    with pytest.raises(RuleError) as info:
        parse_rule({"conditions": [{"type": "lost", "value": False}, {"type": "added", "after": day}]})
    assert info.value.index == 1 and info.value.field == "rule.conditions[1]" and "1900-01-01" in str(info.value)
    assert parse_rule({"conditions": [{"type": "added", "after": "1900-01-01", "before": "2100-12-31"}]})


def test_a_saved_rule_that_can_no_longer_be_evaluated_does_not_break_the_list(app, crowd):
    from bot.models import Segment
    from tests.admin.panel import sign_in

    with app.app_context():
        db.session.add(
            Segment(name="旧规则", rule={"op": "and", "conditions": [{"type": "added", "after": "9999-12-31"}]})
        )
        db.session.commit()
    browser = app.test_client()
    sign_in(browser, "op", make_user(app, "op", "operator")[1])
    res = browser.get("/admin/segments")
    assert res.status_code == 200 and "旧规则" in res.get_data(as_text=True)
    with app.app_context():
        segment_id = db.session.scalar(select(Segment.id).where(Segment.name == "旧规则"))
    counted = browser.get(f"/admin/segments/{segment_id}/count")  # the list counts it, one row at a time
    assert counted.status_code == 200 and counted.get_json()["count"] is None
    assert "规则需要修改" in browser.get("/admin/segments").get_data(as_text=True)  # the stored count, shown
    assert browser.get(f"/admin/segments/{segment_id}/edit").status_code == 200
