"""Custom customer fields at every front door: the admins' 客户字段 page, the profile's field form, the
sidebar, the JSON API (one customer and batches), the segment builder's choices, and the webhook event."""

import json
import threading

import pytest
import requests
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, CustomerEvent, CustomerField, CustomerFieldValue
from bot.services.customers import fields
from tests.admin.panel import csrf_from, post_form
from tests.admin.test_panel import signed_in
from tests.admin.test_sidebar import sign_in_member
from tests.conftest import ApiClient, customers_of, make_token


@pytest.fixture
def people(app, sim, corp, run_worker):
    """Two customers of staff0201 (store 2) and two of staff0301 (store 3)."""
    return [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0201", "staff0301"])]


def define(app):
    with app.app_context():
        made = {
            "skin": fields.define_field("肤质", "choice", "members", ["干性", "油性"]).id,
            "height": fields.define_field("身高", "number", "users").id,
            "likes": fields.define_field("喜好", "choices", "members", ["口红", "香水"]).id,
            "vip_no": fields.define_field("内部编号", "text", "admins").id,
        }
        db.session.commit()
        return made


def audited(app, action):
    with app.app_context():
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


def test_admins_define_order_and_archive_fields_and_others_may_not(app, client, people):
    signed_in(app, client, "admin")
    page = client.get("/admin/customer-fields").get_data(as_text=True)
    assert "还没有客户字段" in page
    res = post_form(
        client,
        "/admin/customer-fields",
        "/admin/customer-fields",
        {"name": "肤质", "kind": "choice", "editors": "members", "options": "干性\n油性\n\n混合"},
    )
    assert res.status_code == 302
    bad = post_form(
        client,
        "/admin/customer-fields",
        "/admin/customer-fields",
        {"name": "肤质", "kind": "text", "editors": "members"},
    )
    assert bad.status_code == 400 and "已有同名字段" in bad.get_data(as_text=True)
    no_options = post_form(
        client,
        "/admin/customer-fields",
        "/admin/customer-fields",
        {"name": "爱好", "kind": "choices", "editors": "members"},
    )
    assert no_options.status_code == 400 and "选项需要" in no_options.get_data(as_text=True)
    wrong_kind = post_form(
        client,
        "/admin/customer-fields",
        "/admin/customer-fields",
        {"name": "x", "kind": "colour", "editors": "members"},
    )
    assert wrong_kind.status_code == 400
    post_form(
        client,
        "/admin/customer-fields",
        "/admin/customer-fields",
        {"name": "身高", "kind": "number", "editors": "users"},
    )
    with app.app_context():
        skin, height = (
            db.session.scalar(select(CustomerField).where(CustomerField.name == n)) for n in ("肤质", "身高")
        )
        skin_id, height_id = skin.id, height.id
        assert [o["label"] for o in skin.options] == ["干性", "油性", "混合"]
    # edit: rename an option away (its customers lose it), the kind stays
    res = post_form(
        client,
        f"/admin/customer-fields/{skin_id}",
        f"/admin/customer-fields/{skin_id}",
        {"name": "皮肤类型", "kind": "text", "editors": "users", "options": "干性\n混合"},
    )
    assert res.status_code == 302
    with app.app_context():
        skin = db.session.get(CustomerField, skin_id)
        assert (skin.name, skin.kind.value, skin.editors.value) == ("皮肤类型", "choice", "users")
        assert [o["label"] for o in skin.live_options] == ["干性", "混合"]
    assert (
        post_form(
            client, "/admin/customer-fields", f"/admin/customer-fields/{height_id}/move", {"offset": "-1"}
        ).status_code
        == 302
    )
    assert (
        post_form(
            client, "/admin/customer-fields", f"/admin/customer-fields/{skin_id}/archive", {"archived": "1"}
        ).status_code
        == 302
    )
    with app.app_context():
        assert [f.name for f in fields.active_fields()] == ["身高"]
    actions = {e.action for e in audited(app, "create_customer_field")} | {
        e.action
        for a in ("edit_customer_field", "move_customer_field", "archive_customer_field")
        for e in audited(app, a)
    }
    assert actions == {"create_customer_field", "edit_customer_field", "move_customer_field", "archive_customer_field"}
    # the page is the admins' alone
    client.post("/admin/logout", data={"csrf_token": csrf_from(client.get("/admin/").get_data(as_text=True))})
    signed_in(app, client, "operator")
    assert client.get("/admin/customer-fields").status_code == 403


def test_the_profile_edits_the_fields_the_user_may_and_shows_a_wrong_value_at_its_field(app, client, people):
    made = define(app)
    signed_in(app, client, "operator")
    url = f"/admin/customers/{people[0]}"
    page = client.get(url).get_data(as_text=True)
    assert f'name="field-{made["height"]}"' in page
    assert f'id="field-{made["vip_no"]}"' in page and "readonly" in page  # admins only: shown, not editable
    res = post_form(
        client,
        url,
        url + "/fields",
        {f"field-{made['skin']}": "油性", f"field-{made['height']}": "abc", f"field-{made['likes']}": ["口红", "香水"]},
    )
    assert res.status_code == 400
    body = res.get_data(as_text=True)
    assert "应为数字" in body and 'value="abc"' in body  # the typed value stays in the form
    with app.app_context():
        assert db.session.scalar(select(CustomerFieldValue.id)) is None  # all or nothing
    res = post_form(
        client,
        url,
        url + "/fields",
        {
            f"field-{made['skin']}": "油性",
            f"field-{made['height']}": "168.5",
            f"field-{made['likes']}": ["口红", "香水"],
            f"field-{made['vip_no']}": "smuggled",  # not the operator's to edit: ignored
        },
    )
    assert res.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert 'value="168.5"' in page and "客户字段变更" in page and "身高：— → 168.5" in page
    with app.app_context():
        values = db.session.scalars(select(CustomerFieldValue)).all()
        assert {v.field_id for v in values} == {made["skin"], made["height"], made["likes"]}
        assert {v.updated_by for v in values} == {f"user:{audited(app, 'edit_customer_fields')[0].user_id}"}
    detail = json.loads(audited(app, "edit_customer_fields")[0].detail)
    assert detail["after"]["身高"] == "168.5" and detail["after"]["喜好"] == "口红、香水"


def test_a_store_manager_edits_only_their_stores_customers_and_a_viewer_reads(app, client, people, roles):
    made = define(app)
    signed_in(app, client, "store_manager", stores=[2], username="mgr-x")
    other = f"/admin/customers/{people[2]}"  # staff0301's: store 3
    mine = f"/admin/customers/{people[0]}"
    token = csrf_from(client.get(mine).get_data(as_text=True))
    assert client.post(other + "/fields", data={f"field-{made['height']}": "1", "csrf_token": token}).status_code == 403
    client.post("/admin/logout", data={"csrf_token": token})
    signed_in(app, client, "viewer", username="viewer-x")
    page = client.get(mine).get_data(as_text=True)
    assert 'id="custom-fields-read"' in page and "custom-fields-form" not in page
    token = csrf_from(page)
    assert client.post(mine + "/fields", data={f"field-{made['height']}": "1", "csrf_token": token}).status_code == 403


def test_a_member_edits_their_fields_in_the_sidebar(app, client, people):
    made = define(app)
    sign_in_member(client, "staff0201")
    url = f"/sidebar/customers/{people[0]}"
    page = client.get(url).get_data(as_text=True)
    assert 'id="fields"' in page and "肤质" in page and "身高" in page
    token = csrf_from(page)
    res = client.post(
        url + "/fields", data={f"field-{made['skin']}": "干性", f"field-{made['likes']}": ["香水"], "csrf_token": token}
    )
    assert res.status_code == 302
    # a users-only field is not the member's: a value posted for it is ignored, nothing written
    res = client.post(
        url + "/fields", data={f"field-{made['skin']}": "油性", "csrf_token": token, f"field-{made['height']}": "1"}
    )
    assert res.status_code == 302
    with app.app_context():
        height = db.session.scalar(select(CustomerFieldValue).where(CustomerFieldValue.field_id == made["height"]))
        assert height is None
    bad = client.post(url + "/fields", data={f"field-{made['skin']}": "中性", "csrf_token": token})
    body = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "没有这个选项" in body
    assert 'id="fields"' in body  # shown at the field on the customer's page, not on a bare refusal page
    with app.app_context():
        event = db.session.scalar(select(CustomerEvent).where(CustomerEvent.kind == "field_changed"))
        assert event.staff_userid == "staff0201"
        assert {e.actor for e in audited(app, "sidebar_edit_customer_fields")} == {"member:staff0201"}
    # someone else's customer
    assert client.post(f"/sidebar/customers/{people[2]}/fields", data={"csrf_token": token}).status_code in (403, 404)


def test_the_api_reads_and_writes_fields_one_customer_at_a_time_and_in_batches(app, client, people, roles):
    made = define(app)
    admin_api, operator_api = (ApiClient(client, make_token(app, roles[who])) for who in ("boss", "ops"))
    listed = operator_api.get("/api/v1/customer-fields").get_json()["items"]
    assert [f["name"] for f in listed] == ["肤质", "身高", "喜好", "内部编号"]
    assert listed[0]["options"] == ["干性", "油性"] and listed[3]["editors"] == "admins"
    res = operator_api.patch(
        f"/api/v1/customers/{people[0]}", {"fields": {"肤质": "油性", str(made["height"]): 171, "喜好": ["香水"]}}
    )
    assert res.status_code == 200, res.get_json()
    assert res.get_json()["fields"] == {"肤质": "油性", "身高": "171", "喜好": ["香水"], "内部编号": None}
    bad = operator_api.patch(f"/api/v1/customers/{people[0]}", {"notes": "x", "fields": {"身高": "tall"}})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "fields.身高"
    forbidden = operator_api.patch(f"/api/v1/customers/{people[0]}", {"fields": {"内部编号": "A1"}})
    assert forbidden.status_code == 403
    assert admin_api.patch(f"/api/v1/customers/{people[0]}", {"fields": {"内部编号": "A1"}}).status_code == 200
    got = operator_api.get(f"/api/v1/customers/{people[0]}").get_json()
    assert got["fields"]["内部编号"] == "A1" and got["fields"]["身高"] == "171"
    batch = admin_api.post(
        "/api/v1/customer-fields/values",
        {
            "rows": [
                {"external_userid": people[1], "fields": {"肤质": "干性", "身高": "160.25"}},
                {"external_userid": people[2], "fields": {"肤质": "中性"}},
                {"external_userid": "wm-nobody", "fields": {"肤质": "干性"}},
                {"external_userid": people[0], "fields": {"肤质": "油性"}},
            ]
        },
    ).get_json()
    assert (batch["rows"], batch["updated"], batch["unchanged"]) == (4, 1, 1)
    assert [(r["row"], r["field"]) for r in batch["refused"]] == [(1, "fields.肤质"), (2, "external_userid")]
    with app.app_context():
        assert db.session.scalar(
            select(CustomerFieldValue.number).where(
                CustomerFieldValue.field_id == made["height"], CustomerFieldValue.number < 170
            )
        ) == pytest.approx(160.25)
    over = admin_api.post("/api/v1/customer-fields/values", {"rows": [{"external_userid": "x", "fields": {}}] * 1001})
    assert over.status_code == 400
    # a store manager's batch: customers of other stores are refused, not written
    manager = ApiClient(client, make_token(app, roles["mgr2"]))
    scoped = manager.post(
        "/api/v1/customer-fields/values", {"rows": [{"external_userid": people[3], "fields": {"肤质": "干性"}}]}
    ).get_json()
    assert scoped["updated"] == 0 and scoped["refused"][0]["reason"].endswith("outside your scope")


def test_the_segment_builder_offers_the_fields_and_a_rule_on_them_saves(app, client, people):
    made = define(app)
    signed_in(app, client, "operator")
    page = client.get("/admin/segments/new").get_data(as_text=True)
    assert '"kind": "choices"' in page or '"kind":"choices"' in page
    rule = {"op": "and", "conditions": [{"type": "field", "field_id": made["skin"], "op": "eq", "value": 2}]}
    token = csrf_from(page)
    preview = client.post("/admin/segments/preview", json={"rule": rule}, headers={"X-CSRFToken": token})
    assert preview.status_code == 200 and preview.get_json()["count"] == 0
    wrong = {"op": "and", "conditions": [{"type": "field", "field_id": made["skin"], "op": "range", "min": 1}]}
    refused = client.post("/admin/segments/preview", json={"rule": wrong}, headers={"X-CSRFToken": token})
    assert refused.status_code == 400 and refused.get_json()["index"] == 0


def test_a_form_opened_before_someone_elses_change_does_not_undo_it(app, client, people, roles):
    made = define(app)
    signed_in(app, client, "operator", username="ops-b")
    url = f"/admin/customers/{people[0]}"
    stale = client.get(url).get_data(as_text=True)  # B opens the profile
    boss = ApiClient(client, make_token(app, roles["boss"]))
    assert boss.patch(f"/api/v1/customers/{people[0]}", {"fields": {"肤质": "油性"}}).status_code == 200
    # B saves only the height, from the page they opened before the change
    form = {"csrf_token": csrf_from(stale), f"field-{made['height']}": "170", f"was-{made['height']}": ""}
    form |= {f"field-{made['skin']}": "", f"was-{made['skin']}": "", f"was-{made['likes']}": "[]"}
    assert client.post(url + "/fields", data=form).status_code == 302
    got = boss.get(f"/api/v1/customers/{people[0]}").get_json()["fields"]
    assert got["肤质"] == "油性" and got["身高"] == "170"


def test_two_writers_of_one_customer_at_once_both_succeed(app, live_server, people, roles):
    """Over real HTTP, one thread each: the same fields of the same customers written at the same moment —
    no 500, one value stays. PostgreSQL's race (row locks under READ COMMITTED); the embedded SQLite takes one
    writer at a time and refuses a reader turning writer meanwhile, which a dev database never meets."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("concurrent writers are PostgreSQL's case (CI runs this suite on PostgreSQL too)")
    define(app)
    token = make_token(app, roles["boss"])
    headers = {"Authorization": f"Bearer {token}"}
    bodies = [
        {"rows": [{"external_userid": p, "fields": {"身高": 150 + i, "喜好": ["口红"]}} for p in people]}
        for i in range(4)
    ]
    barrier = threading.Barrier(len(bodies))
    answers: list[int] = []

    def send(body):
        barrier.wait()
        answers.append(
            requests.post(
                f"{live_server}/api/v1/customer-fields/values", json=body, headers=headers, timeout=60
            ).status_code
        )

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * len(bodies)
    with app.app_context():
        rows = db.session.scalars(
            select(CustomerFieldValue).where(CustomerFieldValue.field_id == made_id(app, "身高"))
        ).all()
        assert len(rows) == len(people) and len({r.customer_id for r in rows}) == len(people)


def made_id(app, name):
    return db.session.scalar(select(CustomerField.id).where(CustomerField.name == name))
