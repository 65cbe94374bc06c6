"""标签 in the panel: the library changed in WeCom first, refusals next to their form, drift, bulk jobs."""

import io

from tests.admin.panel import post_form, sign_in
from tests.conftest import make_user


def _vip(corp):
    return next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")


def test_the_library_from_the_panel(app, api, corp):
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    page = browser.get("/admin/tags").get_data(as_text=True)
    assert "客户等级" in page and "VIP" in page
    made = post_form(browser, "/admin/tags", "/admin/tags", {"group_name": "会员卡", "names": "银卡，金卡"})
    assert made.status_code == 302
    assert {t["name"] for g in corp.tag_groups.values() if g["group_name"] == "会员卡" for t in g["tag"]} == {
        "银卡",
        "金卡",
    }
    again = post_form(browser, "/admin/tags", "/admin/tags", {"group_name": "会员卡", "names": "金卡"})
    assert again.status_code == 400 and "同名标签已存在" in again.get_data(as_text=True)
    vip = _vip(corp)
    renamed = post_form(browser, "/admin/tags", f"/admin/tags/{vip}/edit", {"name": "超级 VIP", "order": "3"})
    assert renamed.status_code == 302 and corp.tag_index()[vip][1] == "超级 VIP"
    assert post_form(browser, "/admin/tags", f"/admin/tags/{vip}/delete", {}).status_code == 302
    assert vip not in corp.tag_index()


def test_the_drift_check_repairs_and_reports(app, api, corp, sim):
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    corp.add_tags({"group_name": "客户等级", "tag": [{"name": "黑卡"}]})  # made in the console, no callback seen
    res = post_form(browser, "/admin/tags", "/admin/tags/drift", {})
    assert res.status_code == 302
    page = browser.get("/admin/tags").get_data(as_text=True)
    assert "新增 1，改名或调序 0，删除 0" in page and "黑卡" in page


def test_bulk_tagging_from_a_csv_upload(app, api, corp, sim, run_worker):
    from tests.admin.panel import csrf_from

    people = [sim.customer_adds(userid="staff0201")[0] for _ in range(3)]
    run_worker()
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    token = csrf_from(browser.get("/admin/tags").get_data(as_text=True))
    upload = "external_userid,name\n" + "\n".join(f"{p.external_userid},{p.name}" for p in people[:2]) + "\n"
    res = browser.post(
        "/admin/tags/jobs",
        data={
            "csrf_token": token,
            "action": "add",
            "tag_ids": [_vip(corp)],
            "csv": (io.BytesIO(upload.encode()), "ids.csv"),
        },
        content_type="multipart/form-data",
    )
    assert res.status_code == 302
    run_worker()
    page = browser.get("/admin/tags").get_data(as_text=True)
    assert '<td class="done">2</td>' in page
    assert [_vip(corp) in corp.contacts[p.external_userid].follows["staff0201"].tag_ids for p in people] == [
        True,
        True,
        False,
    ]
    nothing = post_form(browser, "/admin/tags", "/admin/tags/jobs", {"action": "add", "tag_ids": [_vip(corp)]})
    assert nothing.status_code == 400 and "客户列表为 1–100000 个" in nothing.get_data(as_text=True)
    viewer = app.test_client()
    sign_in(viewer, "v", make_user(app, "v", "viewer")[1])
    assert post_form(viewer, "/admin/tags", "/admin/tags/drift", {}).status_code == 403
