"""素材库 and 话术库 in the panel: pages render for each role, items and replies made and changed through their
forms (uploads checked by content), previews and public covers, refusals next to their field, the store
scope (404 for another store's content, 403 for writes that are not the user's), and 使用统计."""

import io

from sqlalchemy import select

from bot.extensions import db
from bot.models import LibraryItem, QuickReply
from bot.services.library import items, replies, usage
from bot.services.sends import media
from tests.admin.panel import csrf_from, post_form, sign_in
from tests.services.library_helpers import APPID, member, png, store, user


def browser(app, name):
    client = app.test_client()
    password = f"pw-{name}-0123456789"  # make_user's
    assert sign_in(client, name, password).status_code == 302
    return client


def upload(client, url, page, data):
    token = csrf_from(client.get(page).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token}, content_type="multipart/form-data")


def test_the_pages_render_for_every_role(app, roles):
    with app.app_context():
        item = items.save_item({"kind": "text", "title": "开场白", "text": "您好"}, user(roles["ops"]))
        group = replies.save_group({"name": "售后"}, user(roles["ops"]))
        reply = replies.save_reply({"group_id": group.id, "title": "退换", "text": "7 天"}, user(roles["ops"]))
        db.session.commit()
        item_id, reply_id = item.id, reply.id
    for name in ("boss", "ops", "mgr2", "viewer"):
        client = browser(app, name)
        for url in ("/admin/library", f"/admin/library/{item_id}", "/admin/replies", f"/admin/replies/{reply_id}"):
            res = client.get(url)
            assert res.status_code == 200, (name, url)
        assert "素材库" in client.get("/admin/").get_data(as_text=True)  # in the nav
        assert client.get("/admin/library/usage?days=7").status_code == 200
        writer = name != "viewer"
        assert (client.get("/admin/library/new?kind=link").status_code == 200) == writer
        editable = "item-form" in client.get(f"/admin/library/{item_id}").get_data(as_text=True)
        assert editable == (name in ("boss", "ops"))  # a store manager's is not the corp-wide item
    viewer = browser(app, "viewer")
    assert viewer.get("/admin/library/new?kind=text").status_code == 403
    assert upload(viewer, "/admin/library", "/admin/library", {"kind": "text", "title": "x"}).status_code == 403


def test_an_image_item_is_made_previewed_changed_and_archived_through_the_form(app, roles):
    client = browser(app, "ops")
    bad = upload(
        client,
        "/admin/library",
        "/admin/library/new?kind=image",
        {"kind": "image", "title": "动图", "file": (io.BytesIO(b"GIF89a-not-a-png"), "a.gif")},
    )
    assert bad.status_code == 400 and "图片只能是 JPG 或 PNG" in bad.get_data(as_text=True)
    with app.app_context():
        store_id = store(2).id
    made = upload(
        client,
        "/admin/library",
        "/admin/library/new?kind=image",
        {"kind": "image", "title": "新品海报", "store_ids": [str(store_id)], "file": (io.BytesIO(png()), "p.png")},
    )
    assert made.status_code == 302, made.get_data(as_text=True)
    item_url = made.location
    page = client.get(item_url).get_data(as_text=True)
    assert "新品海报" in page and "静安寺店" in page
    with app.app_context():
        item = db.session.scalar(select(LibraryItem))
        item_id = item.id
    preview = client.get(f"/admin/library/{item_id}/preview")
    assert preview.status_code == 200 and preview.mimetype == "image/png" and preview.data == png()
    changed = upload(client, item_url, item_url, {"title": "新品海报（冬季）", "store_ids": [str(store_id)]})
    assert changed.status_code == 302
    with app.app_context():
        assert db.session.get(LibraryItem, item_id).title == "新品海报（冬季）"
        assert db.session.get(LibraryItem, item_id).file.content == png()  # no new upload: the file stays
    assert post_form(client, item_url, f"/admin/library/{item_id}/archive", {}).status_code == 302
    assert "已归档" in client.get(item_url).get_data(as_text=True)
    assert "新品海报" not in client.get("/admin/library").get_data(as_text=True)
    assert "新品海报" in client.get("/admin/library?archived=1").get_data(as_text=True)
    assert post_form(client, item_url, f"/admin/library/{item_id}/restore", {}).status_code == 302


def test_a_mini_program_page_not_ending_in_html_is_refused_next_to_its_field(app, roles):
    client = browser(app, "boss")
    form = {"kind": "miniprogram", "title": "积分商城", "appid": APPID, "page": "pages/mall/index"}
    res = upload(
        client, "/admin/library", "/admin/library/new?kind=miniprogram", {**form, "cover": (io.BytesIO(png()), "c.png")}
    )
    assert res.status_code == 400 and "以 .html 结尾" in res.get_data(as_text=True)
    form["page"] = "pages/mall/index.html"
    res = upload(
        client, "/admin/library", "/admin/library/new?kind=miniprogram", {**form, "cover": (io.BytesIO(png()), "c.png")}
    )
    assert res.status_code == 302
    with app.app_context():
        cover = db.session.scalar(select(LibraryItem)).cover
        public = media.public_url(cover).split("/", 3)[3]
    served = app.test_client().get("/" + public)  # no session: WeCom clients fetch it
    assert served.status_code == 200 and served.data == png()
    assert "immutable" in served.headers["Cache-Control"]
    assert app.test_client().get("/" + public.replace(public.split("-")[1][:4], "0000")).status_code == 404


def test_another_stores_content_is_not_found_and_corp_wide_content_is_not_a_store_managers_to_change(app, roles):
    with app.app_context():
        ours = items.save_item(
            {"kind": "text", "title": "本店", "text": "x", "store_ids": [store(2).id]}, user(roles["mgr2"])
        )
        corp_wide = items.save_item({"kind": "text", "title": "全公司", "text": "y"}, user(roles["ops"]))
        db.session.commit()
        ours_id, corp_id = ours.id, corp_wide.id
    mgr3 = browser(app, "mgr3")
    assert mgr3.get(f"/admin/library/{ours_id}").status_code == 404
    assert mgr3.get(f"/admin/library/{ours_id}/preview").status_code == 404
    assert mgr3.get(f"/admin/library/{corp_id}").status_code == 200
    refused = upload(mgr3, f"/admin/library/{corp_id}", f"/admin/library/{corp_id}", {"title": "改"})
    assert refused.status_code == 403
    assert post_form(mgr3, "/admin/library", f"/admin/library/{corp_id}/archive", {}).status_code == 403
    mgr2 = browser(app, "mgr2")
    corp_only = upload(
        mgr2, "/admin/library", "/admin/library/new?kind=text", {"kind": "text", "title": "t", "text": "t"}
    )
    assert corp_only.status_code == 403 and "店长只能为自己负责的门店添加内容" in corp_only.get_data(as_text=True)
    assert post_form(mgr2, "/admin/library", "/admin/library/folders", {"name": "店长的"}).status_code == 403


def test_replies_are_grouped_searched_and_changed_through_the_forms(app, roles):
    client = browser(app, "ops")
    assert post_form(client, "/admin/replies", "/admin/replies/groups", {"name": "开场白"}).status_code == 302
    with app.app_context():
        group_id = replies.groups()[0].id
    made = post_form(
        client,
        "/admin/replies",
        "/admin/replies",
        {"group_id": group_id, "title": "问候", "text": "您好{customer_name}"},
    )
    assert made.status_code == 302
    empty = post_form(client, "/admin/replies", "/admin/replies", {"group_id": group_id, "title": "空", "text": ""})
    assert empty.status_code == 400 and "请输入话术" in empty.get_data(as_text=True)
    page = client.get("/admin/replies?q=customer_name").get_data(as_text=True)
    assert "问候" in page
    assert "问候" not in client.get("/admin/replies?q=售后").get_data(as_text=True)
    with app.app_context():
        reply_id = db.session.scalar(select(QuickReply.id))
    url = f"/admin/replies/{reply_id}"
    changed = post_form(client, url, url, {"group_id": group_id, "title": "问候语", "text": "{customer_name}您好"})
    assert changed.status_code == 302 and "问候语" in client.get(url).get_data(as_text=True)
    busy = post_form(client, "/admin/replies", f"/admin/replies/groups/{group_id}/delete", {})
    assert busy.status_code == 302 and "分组中还有话术" in client.get("/admin/replies").get_data(as_text=True)
    with app.app_context():
        ours = replies.save_reply(
            {"group_id": group_id, "title": "本店", "text": "x", "store_ids": [store(2).id]}, user(roles["mgr2"])
        )
        db.session.commit()
        ours_id = ours.id
    assert browser(app, "mgr3").get(f"/admin/replies/{ours_id}").status_code == 404


def test_usage_shows_sends_per_item_store_and_member(app, roles):
    with app.app_context():
        item = items.save_item({"kind": "text", "title": "开场白", "text": "您好"}, user(roles["ops"]))
        for userid in ("staff0201", "staff0201", "staff0301"):
            usage.record_send(member(userid), item=item)
        db.session.commit()
        names = {u: member(u).name for u in ("staff0201", "staff0301")}
    page = browser(app, "boss").get("/admin/library/usage").get_data(as_text=True)
    assert "开场白" in page and names["staff0201"] in page and "陆家嘴店" in page
    mine = browser(app, "mgr2").get("/admin/library/usage").get_data(as_text=True)
    assert names["staff0201"] in mine and names["staff0301"] not in mine and "陆家嘴店" not in mine
