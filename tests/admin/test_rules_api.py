"""/api/v1/rules: templates, CRUD, who may switch a rule on, dry runs, runs, and bad input."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from bot.extensions import db
from bot.models import Customer
from bot.services.directory.sync import sync_directory
from bot.services.lifecycle import runner
from tests.admin.panel import sign_in
from tests.conftest import ApiClient, make_token, make_user


@pytest.fixture
def viewer_api(app, client):
    return ApiClient(client, make_token(app, make_user(app, "look", "viewer")[0]))


def test_templates_are_listed_and_a_rule_starts_from_one(admin_api):
    names = {t["template"]: t["name"] for t in admin_api.get("/api/v1/rules/templates").get_json()["items"]}
    assert names == {"birthday": "生日关怀", "new_customer": "新客跟进", "dormant": "沉睡唤醒", "lost": "流失挽回"}
    res = admin_api.post("/api/v1/rules", {"template": "birthday", "cooldown_days": 200})
    assert res.status_code == 201, res.get_json()
    rule = res.get_json()
    assert rule["name"] == "生日关怀" and rule["trigger_args"] == {"days_before": 3} and rule["cooldown_days"] == 200
    assert rule["enabled"] is False and rule["window_start"] == "10:00" and rule["window_end"] == "20:00"
    got = admin_api.get(f"/api/v1/rules/{rule['id']}").get_json()
    assert got["results"] == {"tasks": 0, "reminded": 0, "in_send": 0, "delivered": 0, "converted": 0}


def test_only_an_admin_switches_on_a_rule_that_sends_to_customers(admin_api, operator_api, viewer_api):
    sending = operator_api.post("/api/v1/rules", {"template": "dormant"}).get_json()
    reminding = operator_api.post("/api/v1/rules", {"template": "new_customer"}).get_json()
    refused = operator_api.patch(f"/api/v1/rules/{sending['id']}", {"enabled": True})
    assert refused.status_code == 403 and "管理员" in refused.get_json()["error"]["message"]
    assert operator_api.patch(f"/api/v1/rules/{reminding['id']}", {"enabled": True}).get_json()["enabled"] is True
    assert admin_api.patch(f"/api/v1/rules/{sending['id']}", {"enabled": True}).get_json()["enabled"] is True
    assert viewer_api.post("/api/v1/rules", {"template": "lost"}).status_code == 403
    assert viewer_api.get("/api/v1/rules").status_code == 200
    assert operator_api.delete(f"/api/v1/rules/{reminding['id']}").status_code == 204
    assert operator_api.get(f"/api/v1/rules/{reminding['id']}").status_code == 404


GOOD = {"name": "规则", "trigger": "dormant", "trigger_args": {"days": 30}, "actions": [{"type": "remind"}]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger": "moon_phase"}, "trigger"),
        ({"trigger_args": {"days": 0}}, "trigger_args.days"),
        ({"trigger_args": {"days": "30"}}, "trigger_args.days"),
        ({"trigger": "birthday", "trigger_args": {"days_before": 31}}, "trigger_args.days_before"),
        ({"trigger": "added", "trigger_args": {"days": []}}, "trigger_args.days"),
        ({"trigger": "tag_added", "trigger_args": {"tag_ids": ["no-such-tag"]}}, "trigger_args.tag_ids"),
        ({"actions": []}, "actions"),
        ({"actions": [{"type": "remind"}, {"type": "remind"}]}, "actions[1]"),
        ({"actions": [{"type": "launch_rocket"}]}, "actions[0]"),
        ({"actions": [{"type": "send", "text": ""}]}, "actions[0].text"),
        ({"actions": [{"type": "send", "text": "亲爱的{customer_name}"}]}, "actions[0].text"),
        ({"actions": [{"type": "send", "text": "x" * 4001}]}, "actions[0].text"),
        ({"actions": [{"type": "tag"}]}, "actions[0].add"),
        ({"window_start": "25:00"}, "window_start"),
        ({"window_start": "20:00", "window_end": "10:00"}, "window_end"),
        ({"window_start": "ten"}, "window_start"),
        ({"cooldown_days": -1}, "cooldown_days"),
        ({"segment_id": 999}, "segment_id"),
        ({"name": ""}, "name"),
        ({"name": "名" * 65}, "name"),
        ({"template": "nope"}, "template"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(app, admin_api, change, field):
    res = admin_api.post("/api/v1/rules", {**GOOD, **change})
    assert res.status_code == 400, res.get_json()
    assert res.get_json()["error"]["message"].startswith(field + ":")
    assert admin_api.get("/api/v1/rules").get_json()["items"] == []  # nothing half-saved


def test_hostile_text_is_kept_as_text(admin_api):
    name = "'; DROP TABLE customers; --"
    res = admin_api.post("/api/v1/rules", {**GOOD, "name": name, "actions": [{"type": "remind", "text": "<script>"}]})
    assert res.status_code == 201
    assert admin_api.get(f"/api/v1/rules/{res.get_json()['id']}").get_json()["name"] == name


def test_dry_run_of_a_saved_and_an_unsaved_rule(app, sim, admin_api, run_worker):
    with app.app_context():
        sync_directory()
        db.session.commit()
    someone, _ = sim.customer_adds(userid="staff0201")
    run_worker()
    soon = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=2)
    with app.app_context():
        db.session.execute(
            update(Customer)
            .where(Customer.external_userid == someone.external_userid)
            .values(birthday=date(2000, soon.month, soon.day if (soon.month, soon.day) != (2, 29) else 28))
        )
        db.session.commit()
    unsaved = admin_api.post("/api/v1/rules/dry-run", {"template": "birthday"})
    assert unsaved.status_code == 200, unsaved.get_json()
    answer = unsaved.get_json()
    assert answer["count"] == 1 and answer["customers"][0]["external_userid"] == someone.external_userid
    assert answer["customers"][0]["why"].startswith("生日 ") and answer["customers"][0]["staff"] == "staff0201"
    assert admin_api.get("/api/v1/rules").get_json()["items"] == []  # a dry run saves nothing
    rule = admin_api.post("/api/v1/rules", {"template": "birthday", "window_start": "00:00", "window_end": "24:00"})
    rule_id = rule.get_json()["id"]
    assert admin_api.post(f"/api/v1/rules/{rule_id}/dry-run").get_json()["count"] == 1
    admin_api.patch(f"/api/v1/rules/{rule_id}", {"enabled": True})
    with app.app_context():
        runner.run_rules()
        db.session.commit()
    runs = admin_api.get(f"/api/v1/rules/{rule_id}/runs").get_json()["items"]
    assert [(r["status"], r["matched"], r["reminded"], r["sent"]) for r in runs] == [("ok", 1, 1, 1)]
    assert admin_api.post(f"/api/v1/rules/{rule_id}/dry-run").get_json()["count"] == 0  # already has its task
    results = admin_api.get(f"/api/v1/rules/{rule_id}").get_json()["results"]
    assert results["tasks"] == 1 and results["reminded"] == 1 and results["in_send"] == 1


def test_a_store_manager_sees_only_their_stores_customers_in_a_rule(app, sim, client, admin_api, run_worker):
    """The dry run, the results, the runs and the panel's rule page: a store manager's stores only (issue 20)."""
    with app.app_context():
        sync_directory()
        db.session.commit()
    mine = [sim.customer_adds(userid="staff0201")[0] for _ in range(2)]
    theirs = [sim.customer_adds(userid="staff0301")[0] for _ in range(3)]
    run_worker()
    soon = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=2)
    with app.app_context():
        db.session.execute(update(Customer).values(birthday=date(2000, soon.month, min(soon.day, 28))))
        db.session.commit()
    rule = admin_api.post("/api/v1/rules", {"template": "birthday", "window_start": "00:00", "window_end": "24:00"})
    rule_id = rule.get_json()["id"]
    manager_id, password = make_user(app, "jingan", "store_manager", stores=[2])
    manager = ApiClient(client, make_token(app, manager_id))
    assert admin_api.post(f"/api/v1/rules/{rule_id}/dry-run").get_json()["count"] == 5
    dry = manager.post(f"/api/v1/rules/{rule_id}/dry-run").get_json()
    assert dry["count"] == 2
    assert {c["external_userid"] for c in dry["customers"]} == {c.external_userid for c in mine}
    page_client = app.test_client()
    assert sign_in(page_client, "jingan", password).status_code == 302
    page = page_client.get(f"/admin/lifecycle/{rule_id}").get_data(as_text=True)
    assert all(c.external_userid in page for c in mine) and not any(c.external_userid in page for c in theirs)
    admin_api.patch(f"/api/v1/rules/{rule_id}", {"enabled": True})
    with app.app_context():
        runner.run_rules()
        db.session.commit()
    assert admin_api.get(f"/api/v1/rules/{rule_id}").get_json()["results"]["tasks"] == 5
    assert manager.get(f"/api/v1/rules/{rule_id}").get_json()["results"]["tasks"] == 2
    assert {r["id"]: r["results"]["tasks"] for r in manager.get("/api/v1/rules").get_json()["items"]} == {rule_id: 2}
    [run] = manager.get(f"/api/v1/rules/{rule_id}/runs").get_json()["items"]
    assert (run["matched"], run["reminded"], run["sent"]) == (2, 2, 2)
    assert admin_api.get(f"/api/v1/rules/{rule_id}/runs").get_json()["items"][0]["matched"] == 5
    tasks = page_client.get("/admin/lifecycle/tasks").get_data(as_text=True)
    assert all(c.name in tasks for c in mine) and not any(c.name in tasks for c in theirs)
