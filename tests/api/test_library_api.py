"""/api/v1/library and /api/v1/quick-replies: items made from JSON and from multipart uploads, changed,
archived, listed and filtered; folders, groups and replies; the store scope of each role; bad uploads answered
with the field at fault; usage; and every path in the OpenAPI document."""

import io

import pytest

from bot.extensions import db
from bot.services.library import usage
from tests.conftest import ApiClient, make_token
from tests.services.library_helpers import APPID, MP4, member, png, store


@pytest.fixture
def clients(app, roles):
    return {name: ApiClient(app.test_client(), make_token(app, user_id)) for name, user_id in roles.items()}


def multipart(api, method, url, data):
    call = api.client.post if method == "POST" else api.client.patch
    res = call(url, data=data, headers=api.headers, content_type="multipart/form-data")
    res.request.environ["wsgi.input"].close()  # the test client spools a large body to a file it leaves open
    return res


def test_items_are_made_changed_archived_and_listed(app, clients, corp):
    ops = clients["ops"]
    kept = multipart(ops, "POST", "/api/v1/media", {"kind": "image", "file": (io.BytesIO(png()), "p.png")})
    assert kept.status_code == 201
    image = ops.post("/api/v1/library/items", {"kind": "image", "title": "海报", "file_id": kept.get_json()["id"]})
    assert image.status_code == 201, image.get_json()
    image = image.get_json()
    assert image["file"]["id"] == kept.get_json()["id"] and image["store_ids"] == [] and image["cover_url"] is None
    with app.app_context():
        s2 = store(2).id
    video = multipart(
        ops,
        "POST",
        "/api/v1/library/items",
        {"kind": "video", "title": "教程", "store_ids": f"{s2}", "file": (io.BytesIO(MP4), "v.mp4")},
    )
    assert video.status_code == 201, video.get_json()
    assert video.get_json()["store_ids"] == [s2] and video.get_json()["file"]["filename"] == "v.mp4"
    mini = multipart(
        ops,
        "POST",
        "/api/v1/library/items",
        {
            "kind": "miniprogram",
            "title": "积分商城",
            "appid": APPID,
            "page": "pages/mall/index.html",
            "cover": (io.BytesIO(png("m")), "m.png"),
        },
    ).get_json()
    assert mini["cover_url"].startswith(app.config["SIYU"].public_url + "media/")
    assert app.test_client().get("/" + mini["cover_url"].split("/", 3)[3]).data == png("m")
    text = ops.post("/api/v1/library/items", {"kind": "text", "title": "开场白", "text": "您好"}).get_json()
    listed = ops.get("/api/v1/library/items?per_page=2").get_json()
    assert listed["total"] == 4 and len(listed["items"]) == 2
    assert [i["title"] for i in ops.get("/api/v1/library/items?kind=video").get_json()["items"]] == ["教程"]
    assert [i["title"] for i in ops.get("/api/v1/library/items?q=您好").get_json()["items"]] == ["开场白"]
    assert [i["title"] for i in ops.get(f"/api/v1/library/items?store_id={s2}").get_json()["items"]] == ["教程"]
    changed = ops.patch(f"/api/v1/library/items/{text['id']}", {"text": "您好，欢迎光临", "tag_ids": []})
    assert changed.status_code == 200 and changed.get_json()["text"] == "您好，欢迎光临"
    assert changed.get_json()["title"] == "开场白"  # left out: kept
    refile = multipart(
        ops, "PATCH", f"/api/v1/library/items/{image['id']}", {"file": (io.BytesIO(png("new")), "n.png")}
    )
    assert refile.status_code == 200 and refile.get_json()["file"]["id"] != image["file"]["id"]
    got = ops.get(f"/api/v1/library/items/{image['id']}").get_json()
    assert got["usage_30_days"] == {"sends": 0, "members": 0, "last_sent_at": None}
    downloaded = ops.get(f"/api/v1/library/items/{image['id']}/file")
    assert downloaded.status_code == 200 and downloaded.data == png("new") and downloaded.mimetype == "image/png"
    assert ops.get(f"/api/v1/library/items/{text['id']}/file").status_code == 404
    assert ops.post(f"/api/v1/library/items/{text['id']}/archive").get_json()["archived"] is True
    assert ops.get("/api/v1/library/items").get_json()["total"] == 3
    assert ops.get("/api/v1/library/items?archived=true").get_json()["total"] == 1
    assert ops.post(f"/api/v1/library/items/{text['id']}/restore").get_json()["archived"] is False
    other_kind = ops.patch(f"/api/v1/library/items/{text['id']}", {"title": "x"})
    assert other_kind.status_code == 200  # the kind is not a field of a change: it stays


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"kind": "image", "title": "动图", "file": (b"GIF89a-not-an-image", "a.gif")}, "file", "JPG 或 PNG"),
        (
            {"kind": "image", "title": "大图", "file": (b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024), "b.png")},
            "file",
            "大小",
        ),
        ({"kind": "video", "title": "假视频", "file": (b"%PDF-1.4 not a video", "v.mp4")}, "file", "MP4"),
        ({"kind": "image", "title": "没有文件"}, "file", "请上传文件"),
        (
            {"kind": "miniprogram", "title": "商城", "appid": APPID, "page": "pages/a", "cover": (png(), "c.png")},
            "page",
            ".html",
        ),
        ({"kind": "link", "title": "页", "url": "javascript:alert(1)"}, "url", "http"),
        ({"title": "没有类型"}, "kind", "required"),
    ],
)
def test_bad_uploads_and_fields_get_a_clear_answer(clients, data, field, words):
    data = {k: (io.BytesIO(v[0]), v[1]) if isinstance(v, tuple) else v for k, v in data.items()}
    res = multipart(clients["ops"], "POST", "/api/v1/library/items", data)
    assert res.status_code == 400, res.get_json()
    error = res.get_json()["error"]
    assert error["field"] == field and words in error["message"], error


def test_each_role_reaches_its_stores_items_only(app, clients):
    with app.app_context():
        s2, s3 = store(2).id, store(3).id
    corp_wide = (
        clients["ops"].post("/api/v1/library/items", {"kind": "text", "title": "全公司", "text": "x"}).get_json()
    )
    ours = clients["mgr2"].post(
        "/api/v1/library/items", {"kind": "text", "title": "本店", "text": "y", "store_ids": [s2]}
    )
    assert ours.status_code == 201
    ours = ours.get_json()
    refused = clients["mgr2"].post(
        "/api/v1/library/items", {"kind": "text", "title": "越权", "text": "z", "store_ids": [s3]}
    )
    assert refused.status_code == 403 and refused.get_json()["error"]["field"] == "store_ids"
    assert clients["mgr3"].get(f"/api/v1/library/items/{ours['id']}").status_code == 404
    assert clients["mgr3"].patch(f"/api/v1/library/items/{ours['id']}", {"title": "改"}).status_code == 404
    assert clients["mgr3"].patch(f"/api/v1/library/items/{corp_wide['id']}", {"title": "改"}).status_code == 403
    assert clients["mgr2"].post(f"/api/v1/library/items/{corp_wide['id']}/archive").status_code == 403
    assert {i["title"] for i in clients["mgr3"].get("/api/v1/library/items").get_json()["items"]} == {"全公司"}
    viewer = clients["viewer"].post("/api/v1/library/items", {"kind": "text", "title": "只读", "text": "v"})
    assert viewer.status_code == 403
    assert viewer.get_json()["error"]["message"] == "manage library needs the admin or operator or store_manager role"
    assert clients["viewer"].get("/api/v1/library/items").get_json()["total"] == 2


def test_folders_groups_and_replies(app, clients):
    ops, mgr2 = clients["ops"], clients["mgr2"]
    folder = ops.post("/api/v1/library/folders", {"name": "春季", "order": 1})
    assert folder.status_code == 201
    folder = folder.get_json()
    assert mgr2.post("/api/v1/library/folders", {"name": "店长的"}).status_code == 403
    assert ops.post("/api/v1/library/folders", {"name": "春季"}).status_code == 400
    assert ops.patch(f"/api/v1/library/folders/{folder['id']}", {"name": "春季上新"}).get_json()["name"] == "春季上新"
    item = ops.post("/api/v1/library/items", {"kind": "text", "title": "t", "text": "t", "folder_id": folder["id"]})
    assert ops.get(f"/api/v1/library/items?folder_id={folder['id']}").get_json()["total"] == 1
    assert [f["name"] for f in ops.get("/api/v1/library/folders").get_json()["items"]] == ["春季上新"]
    assert ops.delete(f"/api/v1/library/folders/{folder['id']}").status_code == 200
    assert ops.get(f"/api/v1/library/items/{item.get_json()['id']}").get_json()["folder_id"] is None
    assert ops.delete("/api/v1/library/folders/424242").status_code == 404

    group = ops.post("/api/v1/quick-reply-groups", {"name": "开场白"}).get_json()
    assert mgr2.post("/api/v1/quick-reply-groups", {"name": "店长的"}).status_code == 403
    with app.app_context():
        s2 = store(2).id
    reply = mgr2.post(
        "/api/v1/quick-replies",
        {"group_id": group["id"], "title": "问候", "text": "您好{customer_name}", "store_ids": [s2]},
    )
    assert reply.status_code == 201, reply.get_json()
    reply = reply.get_json()
    assert clients["mgr3"].get(f"/api/v1/quick-replies/{reply['id']}").status_code == 404
    too_long = ops.post("/api/v1/quick-replies", {"group_id": group["id"], "title": "长", "text": "字" * 1400})
    assert too_long.status_code == 400 and too_long.get_json()["error"]["field"] == "text"
    assert ops.get("/api/v1/quick-replies?q=customer_name").get_json()["total"] == 1
    assert ops.get(f"/api/v1/quick-replies?group_id={group['id']}&store_id=0").get_json()["total"] == 0
    assert mgr2.patch(f"/api/v1/quick-replies/{reply['id']}", {"title": "问候语"}).get_json()["title"] == "问候语"
    assert ops.delete(f"/api/v1/quick-reply-groups/{group['id']}").status_code == 409
    assert mgr2.post(f"/api/v1/quick-replies/{reply['id']}/archive").get_json()["archived"] is True
    assert ops.patch(f"/api/v1/quick-reply-groups/{group['id']}", {"order": 3}).get_json()["order"] == 3
    assert ops.delete(f"/api/v1/quick-reply-groups/{group['id']}").status_code == 200


def test_usage_per_item_store_and_member(app, clients):
    item = clients["ops"].post("/api/v1/library/items", {"kind": "text", "title": "开场白", "text": "您好"}).get_json()
    with app.app_context():
        from bot.models import LibraryItem

        row = db.session.get(LibraryItem, item["id"])
        usage.record_send(member("staff0201"), item=row)
        usage.record_send(member("staff0301"), item=row)
        db.session.commit()
        name = member("staff0201").name
    seen = clients["boss"].get("/api/v1/library/usage?days=7").get_json()
    [counted] = seen["items"]
    assert counted["last_sent_at"].endswith("Z")
    assert {k: v for k, v in counted.items() if k != "last_sent_at"} == {
        "id": item["id"],
        "title": "开场白",
        "kind": "text",
        "sends": 2,
        "members": 2,
    }
    assert len(seen["stores"]) == 2 and len(seen["members"]) == 2
    mine = clients["mgr2"].get("/api/v1/library/usage").get_json()
    assert mine["items"][0]["sends"] == 1 and [m["name"] for m in mine["members"]] == [name]
    assert clients["boss"].get(f"/api/v1/library/items/{item['id']}").get_json()["usage_30_days"]["sends"] == 2


def test_the_openapi_document_lists_the_library(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/library/items"])
    assert {"get", "patch"} <= set(paths["/library/items/{item_id}"])
    for path in (
        "/library/items/{item_id}/archive",
        "/library/items/{item_id}/restore",
        "/library/items/{item_id}/file",
        "/library/folders",
        "/library/folders/{folder_id}",
        "/library/usage",
        "/quick-reply-groups",
        "/quick-reply-groups/{group_id}",
        "/quick-replies",
        "/quick-replies/{reply_id}",
        "/quick-replies/{reply_id}/archive",
    ):
        assert path in paths, path
    create = paths["/library/items"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} == set(create)
