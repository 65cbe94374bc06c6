"""The panel through Flask's test client: guards, sign-in, CSRF, roles, store scope, audit."""

import csv
import io
import re

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Customer, CustomerEvent
from bot.services.directory.jobs import sync_directory
from tests.admin.panel import csrf_from, post_form, sign_in
from tests.conftest import make_token, make_user


@pytest.fixture
def synced(app, sim):
    with app.app_context():
        sync_directory()
    return sim


@pytest.fixture
def two_stores(app, synced, run_worker):
    """Customers in store 2 (静安寺店) and store 3 (陆家嘴店)."""
    mine = [synced.customer_adds(userid="staff0201", state="poster-a")[0] for _ in range(2)]
    theirs = [synced.customer_adds(userid="staff0301", state="poster-b")[0] for _ in range(2)]
    run_worker()
    return mine, theirs


def signed_in(app, client, role, stores=None, username=None):
    username = username or f"{role}-user"
    user_id, password = make_user(app, username, role, stores)
    assert sign_in(client, username, password).status_code == 302
    return user_id


def test_every_admin_route_needs_a_signed_in_user(app, client):
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint == "admin.login":
            continue
        url = (
            re.sub(r"<int:\w+>", "1", rule.rule)
            .replace("<external_userid>", "wm1")
            .replace("<wecom_id>", "et1")
            .replace("<template>", "birthday")
            .replace("<kind>", "members")
        )
        assert "<" not in url, url
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            res = client.open(url, method=method)
            checked += 1
            if method == "GET":
                assert res.status_code == 302 and "/admin/login" in res.location, url
            else:  # refused before the view: no CSRF token, and not signed in either
                assert res.status_code in (302, 400), (method, url, res.status_code)
                assert res.status_code != 302 or "/admin/login" in res.location
    assert checked >= 12


def test_root_leads_to_the_panel(client):
    assert client.get("/").location.endswith("/admin/")


def test_sign_in_sets_a_safe_session_cookie_and_sign_out_ends_it(app, client):
    user_id, password = make_user(app, "boss", "admin")
    res = sign_in(client, "boss", password)
    assert res.status_code == 302 and res.location.endswith("/admin/")
    cookie = res.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/admin/").status_code == 200
    res = post_form(client, "/admin/", "/admin/logout", {})
    assert res.status_code == 302
    assert client.get("/admin/").status_code == 302
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["sign_in", "sign_out"]


def test_wrong_password_is_refused_and_repeated_failures_are_throttled(app, client):
    _, password = make_user(app, "clerk", "viewer")
    for _ in range(5):
        res = sign_in(client, "clerk", "wrong-password")
        assert res.status_code == 401 and "用户名或密码错误" in res.get_data(as_text=True)
    res = sign_in(client, "clerk", password)  # right password, but too many failures just now
    assert res.status_code == 401 and "登录失败次数过多" in res.get_data(as_text=True)


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(client):
    res = sign_in(client, "nobody", "whatever-password")
    assert res.status_code == 401 and "用户名或密码错误" in res.get_data(as_text=True)


def test_next_parameter_cannot_send_users_to_another_site(app, client):
    _, password = make_user(app, "boss", "admin")
    page = client.get("/admin/login").get_data(as_text=True)
    res = client.post(
        "/admin/login?next=//evil.example.com/x",
        data={"username": "boss", "password": password, "csrf_token": csrf_from(page)},
    )
    assert res.location.endswith("/admin/")


def test_a_form_without_its_csrf_token_is_refused(app, client, two_stores):
    signed_in(app, client, "admin")
    mine, _ = two_stores
    res = client.post(f"/admin/customers/{mine[0].external_userid}", data={"notes": "forged"})
    assert res.status_code == 400
    with app.app_context():
        assert (
            db.session.scalar(select(Customer.notes).where(Customer.external_userid == mine[0].external_userid)) == ""
        )


def test_editing_a_customer_is_saved_audited_and_on_the_timeline(app, client, two_stores):
    signed_in(app, client, "operator")
    customer = two_stores[0][0]
    url = f"/admin/customers/{customer.external_userid}"
    res = post_form(client, url, url, {"birthday": "1990-05-20", "notes": "喜欢香氛"})
    assert res.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "喜欢香氛" in page and "资料被修改" in page and "添加了员工" in page
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "edit_customer"))
        assert entry.actor == "operator-user" and '"notes": "喜欢香氛"' in entry.detail
        kinds = set(db.session.scalars(select(CustomerEvent.kind)))
    assert {"added", "profile_edited"} <= kinds


def test_bad_field_values_are_shown_next_to_the_field(app, client, two_stores):
    signed_in(app, client, "admin")
    url = f"/admin/customers/{two_stores[0][0].external_userid}"
    res = post_form(client, url, url, {"birthday": "not-a-date", "notes": "x" * 2001})
    assert res.status_code == 400
    page = res.get_data(as_text=True)
    assert "备注最多 2000 字" in page and 'class="error"' in page


def test_viewer_cannot_edit_and_operator_cannot_manage_users(app, client, two_stores):
    signed_in(app, client, "viewer")
    url = f"/admin/customers/{two_stores[0][0].external_userid}"
    assert "<textarea" not in client.get(url).get_data(as_text=True)
    token = csrf_from(client.get("/admin/settings").get_data(as_text=True))
    assert client.post(url, data={"notes": "x", "csrf_token": token}).status_code == 403
    other = app.test_client()
    signed_in(app, other, "operator")
    assert other.get("/admin/users").status_code == 403
    assert other.get("/admin/audit").status_code == 403


def test_store_manager_sees_only_their_store(app, client, two_stores):
    mine, theirs = two_stores
    user_id = signed_in(app, client, "store_manager", stores=[2])
    listing = client.get("/admin/customers").get_data(as_text=True)
    assert all(c.name in listing for c in mine) and not any(c.name in listing for c in theirs)
    assert client.get(f"/admin/customers/{mine[0].external_userid}").status_code == 200
    assert client.get(f"/admin/customers/{theirs[0].external_userid}").status_code == 403
    exported = client.get("/admin/customers/export.csv").get_data(as_text=True).lstrip("\ufeff")
    ids = {row["external_userid"] for row in csv.DictReader(io.StringIO(exported))}
    assert ids == {c.external_userid for c in mine}
    token = make_token(app, user_id)  # the API enforces the same scope for the same user
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/v1/customers/{theirs[0].external_userid}", headers=headers).status_code == 403
    assert client.get(f"/api/v1/customers/{mine[0].external_userid}", headers=headers).status_code == 200
    listed = client.get("/api/v1/customers", headers=headers).get_json()
    assert {c["external_userid"] for c in listed["items"]} == {c.external_userid for c in mine}
    assert client.get("/api/v1/events", headers=headers).status_code == 403
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "静安寺店" in dashboard and "陆家嘴店" not in dashboard


def test_customer_filters_and_keyset_pages(app, client, synced, run_worker, corp):
    for n in range(55):
        synced.customer_adds(userid="staff0201" if n % 2 else "staff0301", state=f"s{n % 3}")
    run_worker()
    signed_in(app, client, "admin")
    first = client.get("/admin/customers").get_data(as_text=True)
    assert 'id="next-page"' in first
    next_url = first.split('id="next-page"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert 'id="next-page"' not in second and "第一页" in second
    page = client.get("/admin/customers?channel=s1&staff=staff0201").get_data(as_text=True)
    with app.app_context():
        expected = db.session.query(Customer).join(Customer.follows).filter_by(state="s1").count()
    assert page.count("/admin/customers/wm") == expected // 2 or page.count("/admin/customers/wm") > 0
    empty = client.get("/admin/customers?q=没有这个人").get_data(as_text=True)
    assert "没有符合条件的客户" in empty


def test_added_dates_out_of_range_are_ignored_with_a_note(app, client, synced, run_worker):
    """9999-12-31 overflowed the day added to the end of the range (a 500): a date outside 1900–2100 is a
    filter ignored, said beside it, and the list (and its export) shows what the other filters select."""
    contact, _ = synced.customer_adds(userid="staff0201")
    run_worker()
    signed_in(app, client, "admin")
    for query in ("added_to=9999-12-31", "added_from=0001-01-01&added_to=2100-12-31", "added_from=1899-12-31"):
        res = client.get(f"/admin/customers?{query}")
        page = res.get_data(as_text=True)
        assert res.status_code == 200 and contact.external_userid in page, query
        assert 'class="error" id="added_' in page and "日期应在 1900-01-01 与 2100-12-31 之间" in page, query
        export = client.get(f"/admin/customers/export.csv?{query}")
        assert export.status_code == 200 and contact.external_userid in export.get_data(as_text=True)
    fine = client.get("/admin/customers?added_from=1900-01-01&added_to=2100-12-31").get_data(as_text=True)
    assert contact.external_userid in fine and 'class="error"' not in fine
    past = client.get("/admin/customers?added_to=1999-12-31").get_data(as_text=True)
    assert contact.external_userid not in past and 'class="error"' not in past


def test_dashboard_counts_and_retry(app, client, synced, corp, run_worker):
    corp.inject("externalcontact/get", 48002)
    synced.customer_adds(userid="staff0201", state="poster-a")
    synced.customer_adds(userid="staff0201", state="poster-a")
    run_worker()
    signed_in(app, client, "admin")
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="total-added">1<' in page and 'id="events-dead">1<' in page and "poster-a" in page
    with app.app_context():
        from bot.models import CallbackEvent, EventStatus

        dead = db.session.scalar(select(CallbackEvent.id).where(CallbackEvent.status == EventStatus.dead))
    # the pipeline is the corp's: a store manager's dashboard does not list its failures
    manager = app.test_client()
    signed_in(app, manager, "store_manager", stores=[2])
    theirs = manager.get("/admin/").get_data(as_text=True)
    assert 'id="events-dead"' not in theirs and "48002" not in theirs and "poster-a" in theirs
    res = post_form(client, "/admin/", f"/admin/events/{dead}/retry", {})
    assert res.status_code == 302
    run_worker()
    assert 'id="events-dead">0<' in client.get("/admin/").get_data(as_text=True)


def test_sync_now_reports_progress(app, client, sim, run_worker):
    signed_in(app, client, "admin")
    assert post_form(client, "/admin/staff", "/admin/staff/sync", {}).status_code == 302
    run_worker()
    progress = client.get("/admin/staff/sync/progress").get_json()
    assert progress["state"] == "done" and progress["done"] == progress["total"] == 3
    assert "4 名员工" in progress["message"]
    assert "staff0201" in client.get("/admin/staff").get_data(as_text=True)


def test_sandbox_burst_from_settings(app, client, sim, fake_wecom_app, run_worker):
    fake_wecom_app.config["SIMULATOR"] = sim
    try:
        signed_in(app, client, "operator")
        bad = post_form(client, "/admin/settings", "/admin/settings/sandbox/burst", {"count": 0})
        assert bad.status_code == 400 and "1–200 之间" in bad.get_data(as_text=True)
        burst = {"action": "add", "count": 3, "state": "expo"}
        assert post_form(client, "/admin/settings", "/admin/settings/sandbox/burst", burst).status_code == 302
        run_worker()
        for action in ("tag", "delete"):
            res = post_form(client, "/admin/settings", "/admin/settings/sandbox/burst", {"action": action, "count": 1})
            assert res.status_code == 302
        assert "Siyu 确认收到 1 条回调" in client.get("/admin/settings").get_data(as_text=True)
    finally:
        fake_wecom_app.config["SIMULATOR"] = None
    run_worker()
    with app.app_context():
        from bot.models import FollowRelation, FollowStatus

        assert db.session.query(Customer).count() == 3
        statuses = [f.status for f in db.session.query(FollowRelation)]
        assert statuses.count(FollowStatus.deleted_by_customer) == 1
        kinds = set(db.session.scalars(select(CustomerEvent.kind)))
        assert {"added", "edited", "deleted_by_customer"} <= kinds


def test_dashboard_filters_by_store_and_channel_within_scope(app, client, two_stores):
    signed_in(app, client, "store_manager", stores=[2])
    with app.app_context():
        from bot.models import Store

        mine = db.session.scalar(select(Store.id).where(Store.department_id == 2))
        theirs = db.session.scalar(select(Store.id).where(Store.department_id == 3))
    assert 'id="total-added">2<' in client.get(f"/admin/?store={mine}").get_data(as_text=True)
    assert 'id="total-added">0<' in client.get(f"/admin/?store={mine}&channel=poster-b").get_data(as_text=True)
    assert client.get(f"/admin/?store={theirs}").status_code == 403


def test_admin_creates_a_store_manager(app, client, synced):
    signed_in(app, client, "admin")
    res = post_form(
        client,
        "/admin/users",
        "/admin/users",
        {"username": "li", "role": "store_manager", "password": "long-enough-pw"},
    )
    assert res.status_code == 400 and "店长至少负责一个门店" in res.get_data(as_text=True)
    with app.app_context():
        from bot.models import Store

        store_id = db.session.scalar(select(Store.id).where(Store.department_id == 2))
    res = post_form(
        client,
        "/admin/users",
        "/admin/users",
        {"username": "li", "role": "store_manager", "password": "long-enough-pw", "stores": [store_id]},
    )
    assert res.status_code == 302
    assert "li" in client.get("/admin/users").get_data(as_text=True)
    assert "create_user" in client.get("/admin/audit").get_data(as_text=True)


def test_admin_changes_a_role_disables_an_account_and_resets_a_password(app, client, synced):
    signed_in(app, client, "admin")
    user_id, old_password = make_user(app, "clerk", "viewer")
    url = f"/admin/users/{user_id}"
    form = client.get(url).get_data(as_text=True)
    assert re.search(r'<option[^>]*(selected[^>]*value="viewer"|value="viewer"[^>]*selected)', form)
    res = post_form(client, url, url, {"role": "operator", "active": "y", "new_password": "a-brand-new-pw"})
    assert res.status_code == 302
    other = app.test_client()
    assert sign_in(other, "clerk", old_password).status_code == 401
    assert sign_in(other, "clerk", "a-brand-new-pw").status_code == 302
    assert other.get("/admin/users").status_code == 403  # an operator, not an admin
    res = post_form(client, url, url, {"role": "operator"})  # active unticked: disabled
    assert res.status_code == 302
    assert other.get("/admin/").status_code == 302  # the disabled account's session no longer works
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "edit_user")).first()
        assert '"role": "viewer"' in entry.detail and '"password_reset": true' in entry.detail
        assert "a-brand-new-pw" not in entry.detail


def test_an_admin_cannot_lock_themselves_out(app, client):
    user_id = signed_in(app, client, "admin", username="root")
    url = f"/admin/users/{user_id}"
    res = post_form(client, url, url, {"role": "viewer", "active": "y"})
    assert res.status_code == 400 and "不能取消自己的管理员权限" in res.get_data(as_text=True)


def test_search_by_name_remark_or_id_takes_wildcards_literally(app, client, two_stores):
    signed_in(app, client, "admin")
    mine, theirs = two_stores
    by_name = client.get("/admin/customers", query_string={"q": mine[0].name[1:]}).get_data(as_text=True)
    assert mine[0].name in by_name
    by_id = client.get("/admin/customers", query_string={"q": theirs[1].external_userid}).get_data(as_text=True)
    assert theirs[1].name in by_id and mine[0].name not in by_id
    with app.app_context():
        from bot.models import FollowRelation

        for contact, remark in ((theirs[0], "VIP_1"), (theirs[1], "VIPX1")):
            follow = (
                db.session.query(FollowRelation)
                .join(Customer)
                .filter(Customer.external_userid == contact.external_userid)
                .one()
            )
            follow.remark = remark
        db.session.commit()
    found = client.get("/admin/customers", query_string={"q": "VIP_1"}).get_data(as_text=True)
    assert theirs[0].name in found and theirs[1].name not in found  # "_" is not a wildcard
    nothing = client.get("/admin/customers", query_string={"q": "%"}).get_data(as_text=True)
    assert "没有符合条件的客户" in nothing  # nor is "%"


def test_rankings_order_members_and_stores_by_net_adds_within_scope(app, client, synced, run_worker):
    for _ in range(3):
        synced.customer_adds(userid="staff0301")
    lost, _ = synced.customer_adds(userid="staff0201")
    synced.customer_adds(userid="staff0201")
    synced.customer_deletes_member(lost.external_userid, "staff0201")
    run_worker()
    signed_in(app, client, "admin")
    page = client.get("/admin/rankings?days=7").get_data(as_text=True)
    members = page.split('id="member-ranking"')[1].split("</table>")[0]
    assert members.index("staff0301") < members.index("staff0201")  # net 3 before net 1
    stores = page.split('id="store-ranking"')[1].split("</table>")[0]
    assert stores.index("陆家嘴店") < stores.index("静安寺店")
    manager = app.test_client()
    signed_in(app, manager, "store_manager", stores=[2], username="jingan")
    scoped = manager.get("/admin/rankings").get_data(as_text=True)
    assert "staff0201" in scoped and "staff0301" not in scoped and "陆家嘴店" not in scoped


def test_nul_characters_are_refused_by_the_panel_and_the_api(app, client, api_token):
    from tests.admin.panel import sign_in
    from tests.conftest import make_user

    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    assert browser.get("/admin/customers?q=a%00b").status_code == 400
    assert browser.post("/admin/channels", data={"name": "a\x00b"}).status_code == 400
    headers = {"Authorization": f"Bearer {api_token}"}
    res = client.post("/api/v1/channels", json={"name": "a\x00b", "staff": ["x"]}, headers=headers)
    assert res.status_code == 400 and "NUL" in res.get_json()["error"]["message"]
    nested = client.post("/api/v1/segments/preview", json={"rule": {"conditions": [{"k": ["\x00"]}]}}, headers=headers)
    assert nested.status_code == 400


def test_numbers_beyond_the_database_in_panel_queries_are_ignored(app, client, synced):
    signed_in(app, client, "admin")
    huge = "99999999999999999999"
    for path in (
        f"/admin/customers?after={huge}&store={huge}",
        f"/admin/?days={huge}&store={huge}",
        f"/admin/audit?before={huge}",
        f"/admin/groups?store={huge}&page={huge}",
    ):
        assert client.get(path).status_code == 200, path
    assert client.get(f"/admin/groups/{huge}").status_code == 404


def test_the_customer_export_quotes_every_text_cell_that_a_spreadsheet_would_run(app, client, sim, run_worker):
    """A state (or any text) starting with = + - @ opens as text, not as a formula."""
    sim.customer_adds(userid="staff0201", state="=HYPERLINK(1)")
    run_worker()
    signed_in(app, client, "admin")
    exported = client.get("/admin/customers/export.csv").get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert rows and all(not v.startswith(("=", "+", "-", "@")) for row in rows for v in row.values())
    assert "'=HYPERLINK(1)" in exported
