"""The welcome, mass-send and lifecycle forms pick their attachments from the library, and an image uploaded
in them becomes a library item (one item serves every channel); attachments given otherwise stay as they were."""

import io

from sqlalchemy import select

from bot.extensions import db
from bot.models import Channel, LibraryItem, LifecycleRule, MassSend, WelcomeMessage
from bot.services.library import items
from tests.admin.panel import csrf_from, post_form
from tests.admin.test_library_pages import browser
from tests.services.library_helpers import png, store, user


def _link(app, roles):
    with app.app_context():
        link = items.save_item(
            {"kind": "link", "title": "会员日", "url": "https://e.com/day"}, user(roles["ops"]), cover=("c.png", png())
        )
        image = items.save_item({"kind": "image", "title": "海报"}, user(roles["ops"]), file=("p.png", png("p")))
        db.session.commit()
        return link.id, image.id


def _post(client, page, action, data):
    token = csrf_from(client.get(page).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token}, content_type="multipart/form-data")


def test_a_welcome_picks_library_items_and_an_upload_joins_the_library(app, roles, corp):
    link_id, image_id = _link(app, roles)
    client = browser(app, "ops")
    assert "[链接] 会员日" in client.get("/admin/channels/new").get_data(as_text=True)
    form = {
        "name": "门店海报",
        "staff": ["staff0201"],
        "state": "lib-welcome",
        "skip_verify": "y",
        "welcome": "欢迎{customer_name}",
        "welcome_items": [str(link_id)],
        "welcome_image": (io.BytesIO(png("upload")), "门店.png"),
    }
    res = _post(client, "/admin/channels", "/admin/channels", form)
    assert res.status_code == 302, res.get_data(as_text=True)
    with app.app_context():
        variant = db.session.scalar(select(WelcomeMessage))
        uploaded = db.session.scalar(select(LibraryItem).where(LibraryItem.title == "门店.png"))
        assert uploaded is not None and uploaded.kind == "image" and uploaded.stores == []
        assert [a["library_item_id"] for a in variant.attachments] == [link_id, uploaded.id]
        assert variant.attachments[1]["image"]["media_id"] in corp.media
        channel_id = db.session.scalar(select(Channel.id))
    detail = client.get(f"/admin/channels/{channel_id}").get_data(as_text=True)
    assert f'<option selected value="{link_id}">' in detail or f'value="{link_id}" selected' in detail
    edited = {k: v for k, v in form.items() if k not in ("state", "welcome_image")}
    edited["welcome_items"] = [str(image_id)]
    assert _post(client, f"/admin/channels/{channel_id}", f"/admin/channels/{channel_id}", edited).status_code == 302
    with app.app_context():
        assert [a["library_item_id"] for a in db.session.scalar(select(WelcomeMessage)).attachments] == [image_id]
    bad = _post(
        client,
        "/admin/channels",
        "/admin/channels",
        {**form, "state": "lib-2", "welcome_image": (io.BytesIO(b"GIF89a-nope"), "x.gif")},
    )
    assert bad.status_code == 400 and "图片只能是 JPG 或 PNG" in bad.get_data(as_text=True)


def test_a_mass_send_picks_library_items_and_a_store_managers_upload_is_their_stores(app, roles):
    link_id, image_id = _link(app, roles)
    client = browser(app, "mgr2")
    page = client.get("/admin/sends/new").get_data(as_text=True)
    assert "[图片] 海报" in page and "[链接] 会员日" in page
    res = _post(
        client,
        "/admin/sends",
        "/admin/sends",
        {
            "name": "会员日",
            "text": "周六见",
            "target_kind": "list",
            "external_userids": "wm-someone",
            "library_item_ids": [str(image_id), str(link_id)],
            "image": (io.BytesIO(png("mine")), "本店.png"),
            "action": "draft",
        },
    )
    assert res.status_code == 302, res.get_data(as_text=True)
    with app.app_context():
        send = db.session.scalar(select(MassSend))
        uploaded = db.session.scalar(select(LibraryItem).where(LibraryItem.title == "本店.png"))
        assert [s.id for s in uploaded.stores] == [store(2).id]  # a store manager's upload: their store's item
        assert [a.get("item_id") for a in send.attachments] == [image_id, link_id, uploaded.id]
        assert [a["type"] for a in send.attachments] == ["image", "link", "image"]


def test_a_lifecycle_send_keeps_its_library_items_when_the_rule_is_edited(app, roles):
    link_id, _ = _link(app, roles)
    client = browser(app, "boss")
    form = {
        "name": "沉睡唤醒",
        "trigger": "dormant",
        "dormant_days": "30",
        "send": "1",
        "send_text": "好久不见",
        "send_items": [str(link_id)],
        "window_start": "10:00",
        "window_end": "20:00",
    }
    assert post_form(client, "/admin/lifecycle", "/admin/lifecycle", form).status_code == 302
    with app.app_context():
        rule = db.session.scalar(select(LifecycleRule))
        [attachment] = rule.actions[0]["attachments"]
        assert attachment["item_id"] == link_id and attachment["type"] == "link"
        rule_id = rule.id
    page = client.get(f"/admin/lifecycle/{rule_id}").get_data(as_text=True)
    assert f'value="{link_id}" selected' in page
    url = f"/admin/lifecycle/{rule_id}"
    assert post_form(client, url, url, {**form, "send_text": "好久不见！"}).status_code == 302
    with app.app_context():
        assert db.session.get(LifecycleRule, rule_id).actions[0]["attachments"][0]["item_id"] == link_id
