"""Library items sent: the sidebar's sendChatMessage arguments per kind (media ids uploaded once, reused, and
uploaded again when stale or refused), and one item serving welcome messages, mass sends and lifecycle sends."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.extensions import db
from bot.models import LibraryItem, MassSend, MediaFile, WelcomeMessage
from bot.models._time import utcnow
from bot.services.clients import contact_api
from bot.services.errors import WeComRefused
from bot.services.library import items, messages
from bot.services.library.jobs import refresh_library_media
from bot.services.sends import media
from tests.conftest import ApiClient, customers_of, make_token
from tests.services.library_helpers import APPID, MP4, PDF, png, store, user


def _library(app, roles):
    """One item of each kind, corp-wide, made by the operator; their ids by kind."""
    with app.app_context():
        ops = user(roles["ops"])
        made = {
            "text": items.save_item({"kind": "text", "title": "开场白", "text": "您好"}, ops),
            "image": items.save_item({"kind": "image", "title": "海报"}, ops, file=("p.png", png())),
            "video": items.save_item({"kind": "video", "title": "教程"}, ops, file=("v.mp4", MP4)),
            "file": items.save_item({"kind": "file", "title": "价目表"}, ops, file=("p.pdf", PDF)),
            "link": items.save_item(
                {"kind": "link", "title": "会员日", "url": "https://e.com/day", "description": "8 折"},
                ops,
                cover=("c.png", png("cover")),
            ),
            "miniprogram": items.save_item(
                {"kind": "miniprogram", "title": "积分商城", "appid": APPID, "page": "pages/mall/index.html"},
                ops,
                cover=("m.png", png("mini")),
            ),
        }
        db.session.commit()
        return {kind: item.id for kind, item in made.items()}


def test_chat_messages_per_kind_upload_media_once_and_again_when_stale_or_refused(app, roles, corp):
    ids = _library(app, roles)
    with app.app_context():
        api = contact_api()
        item = {kind: db.session.get(LibraryItem, i) for kind, i in ids.items()}
        assert messages.chat_message(item["text"], api) == {"msgtype": "text", "text": {"content": "您好"}}
        for kind in ("image", "video", "file"):
            message = messages.chat_message(item[kind], api)
            assert set(message) == {"msgtype", kind} and message["msgtype"] == kind
            assert message[kind]["mediaid"] in corp.media  # the JS-SDK's key, not the server API's media_id
        assert corp.calls.count("media/upload") == 3
        first = messages.chat_message(item["image"], api)["image"]["mediaid"]
        assert messages.chat_message(item["image"], api)["image"]["mediaid"] == first  # reused
        assert corp.calls.count("media/upload") == 3
        cover = item["link"].cover
        news = messages.chat_message(item["link"], api)
        assert news == {
            "msgtype": "news",
            "news": {"link": "https://e.com/day", "title": "会员日", "desc": "8 折", "imgUrl": media.public_url(cover)},
        }
        assert news["news"]["imgUrl"].startswith(app.config["SIYU"].public_url + "media/")
        mini = messages.chat_message(item["miniprogram"], api, cover_url=lambda f: f"https://cdn.example.com/{f.id}")
        assert mini == {
            "msgtype": "miniprogram",
            "miniprogram": {
                "appid": APPID,
                "title": "积分商城",
                "imgUrl": f"https://cdn.example.com/{item['miniprogram'].cover_id}",
                "page": "pages/mall/index.html",
            },
        }
        # The member's client answered 40007 (WeCom forgot the id early): the sidebar asks again with fresh.
        corp.media.pop(first)
        again = messages.chat_message(item["image"], api, fresh=True)["image"]["mediaid"]
        assert again != first and again in corp.media and corp.calls.count("media/upload") == 4
        # 2.5 days on, the id is not trusted any more: uploaded again before WeCom's 3 days run out.
        item["image"].file.uploaded_at = utcnow() - timedelta(days=2, hours=13)
        assert messages.chat_message(item["image"], api)["image"]["mediaid"] not in (first, again)
        corp.inject("media/upload", 45009)
        item["video"].file.uploaded_at = None
        with pytest.raises(WeComRefused) as refused:
            messages.chat_message(item["video"], api)
        assert refused.value.errcode == 45009 and refused.value.status == 502


def test_one_item_serves_welcome_messages_and_follows_its_changes(app, roles, sim, corp, run_worker):
    ids = _library(app, roles)
    ops = ApiClient(app.test_client(), make_token(app, roles["ops"]))
    body = {"name": "静安门店海报", "staff": ["staff0201"], "state": "lib-poster"}
    text_item = ops.post(
        "/api/v1/channels", {**body, "welcome": [{"text": "hi", "attachments": [{"library_item_id": ids["text"]}]}]}
    )
    assert text_item.status_code == 400 and "文字素材不能作为附件" in text_item.get_json()["error"]["message"]
    picked = [{"library_item_id": ids[k]} for k in ("image", "link", "miniprogram")]
    res = ops.post("/api/v1/channels", {**body, "welcome": [{"text": "欢迎{customer_name}", "attachments": picked}]})
    assert res.status_code == 201, res.get_json()
    stored = res.get_json()["welcome"][0]["attachments"]
    assert [a["msgtype"] for a in stored] == ["image", "link", "miniprogram"]
    assert [a["library_item_id"] for a in stored] == [ids["image"], ids["link"], ids["miniprogram"]]
    assert stored[0]["image"]["media_id"] in corp.media and stored[2]["miniprogram"]["pic_media_id"] in corp.media
    assert stored[1]["link"]["picurl"].startswith(app.config["SIYU"].public_url + "media/")
    contact, _ = sim.customer_adds(userid="staff0201", state="lib-poster")
    run_worker()
    [sent] = corp.welcomes_sent
    assert sent["text"]["content"] == f"欢迎{contact.name}"
    assert [a["msgtype"] for a in sent["attachments"]] == ["image", "link", "miniprogram"]
    assert all("library_item_id" not in a for a in sent["attachments"])  # Siyu's marker stays home
    # The link item changed: its welcomes follow. The image archived: its welcomes drop it.
    assert ops.patch(f"/api/v1/library/items/{ids['link']}", {"title": "会员日（双倍积分）"}).status_code == 200
    assert ops.post(f"/api/v1/library/items/{ids['image']}/archive").status_code == 200
    with app.app_context():
        variant = db.session.scalar(select(WelcomeMessage))
        assert [a["msgtype"] for a in variant.attachments] == ["link", "miniprogram"]
        assert variant.attachments[0]["link"]["title"] == "会员日（双倍积分）"
        cover = db.session.get(LibraryItem, ids["miniprogram"]).cover
        old = cover.media_id
        cover.uploaded_at = utcnow() - timedelta(days=2, hours=13)
        db.session.commit()
    assert refresh_library_media() == {"variants": 1}  # the hourly job: uploaded again within its 3 days
    with app.app_context():
        fresh = db.session.scalar(select(WelcomeMessage)).attachments[1]["miniprogram"]["pic_media_id"]
        assert fresh != old and fresh in corp.media
    assert refresh_library_media() == {"variants": 0}
    missing = {**body, "state": "lib-2", "welcome": [{"attachments": [{"library_item_id": 424242}]}]}
    assert ops.post("/api/v1/channels", missing).status_code == 400


def test_a_mass_send_attaches_library_items_whoever_uploaded_them(app, roles, sim, corp, run_worker):
    ids = _library(app, roles)
    people = customers_of(app, sim, run_worker, ["staff0201", "staff0202"], 1)
    target = {"external_userids": [p.external_userid for p in people]}
    mgr2 = ApiClient(app.test_client(), make_token(app, roles["mgr2"]))
    with app.app_context():
        image_file = db.session.get(LibraryItem, ids["image"]).file_id
        items.set_archived(db.session.get(LibraryItem, ids["video"]), user(roles["ops"]), True)
        scope = {"store_ids": [store(2).id]}
        ours = items.save_item({"kind": "file", "title": "本店", **scope}, user(roles["mgr2"]), file=("o.pdf", PDF))
        db.session.commit()
        ours_id = ours.id

    def draft(api, attachments):
        return api.post(
            "/api/v1/sends", {"name": "会员日", "text": "会员日快乐", "target": target, "attachments": attachments}
        )

    raw = draft(mgr2, [{"type": "image", "file_id": image_file}])
    assert raw.status_code == 403  # the operator's file, named bare: not theirs to attach
    made = draft(mgr2, [{"type": "library", "item_id": ids["image"]}, {"type": "library", "item_id": ids["link"]}])
    assert made.status_code == 201, made.get_json()
    with app.app_context():
        send = db.session.get(MassSend, made.get_json()["id"])
        assert send.attachments[0] == {"type": "image", "file_id": image_file, "item_id": ids["image"]}
        assert send.attachments[1]["type"] == "link" and send.attachments[1]["url"] == "https://e.com/day"
        assert send.attachments[1]["picurl"].startswith(app.config["SIYU"].public_url + "media/")
    for refused_id in (ids["text"], ids["video"], 424242):
        res = draft(mgr2, [{"type": "library", "item_id": refused_id}])
        assert res.status_code == 400 and res.get_json()["error"]["field"] == "attachments"
    mgr3 = ApiClient(app.test_client(), make_token(app, roles["mgr3"]))
    assert draft(mgr3, [{"type": "library", "item_id": ours_id}]).status_code == 400  # another store's item
    boss = ApiClient(app.test_client(), make_token(app, roles["boss"]))
    picked = [{"type": "library", "item_id": ids["miniprogram"]}, {"type": "library", "item_id": ids["image"]}]
    body = {"name": "海报", "text": "新品", "target": target, "approve": True, "attachments": picked}
    sent = boss.post("/api/v1/sends", body)
    assert sent.status_code == 201, sent.get_json()
    run_worker()
    payload = next(iter(corp.mass_tasks.values())).payload
    assert payload["attachments"][0]["miniprogram"]["pic_media_id"] in corp.media
    assert payload["attachments"][1]["image"]["media_id"] in corp.media


def test_a_lifecycle_send_attaches_a_library_item(app, roles):
    ids = _library(app, roles)
    boss = ApiClient(app.test_client(), make_token(app, roles["boss"]))
    rule = {
        "name": "沉睡唤醒",
        "trigger": "dormant",
        "trigger_args": {"days": 30},
        "actions": [{"type": "send", "text": "好久不见", "attachments": [{"type": "library", "item_id": ids["link"]}]}],
    }
    res = boss.post("/api/v1/rules", rule)
    assert res.status_code == 201, res.get_json()
    [attachment] = res.get_json()["actions"][0]["attachments"]
    assert attachment["type"] == "link" and attachment["item_id"] == ids["link"] and attachment["title"] == "会员日"
    rule["actions"][0]["attachments"] = [{"type": "library", "item_id": ids["text"]}]
    refused = boss.post("/api/v1/rules", rule)
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "actions[0].attachments"
    with app.app_context():
        assert db.session.scalar(select(MediaFile.id).where(MediaFile.kind == "gif")) is None
