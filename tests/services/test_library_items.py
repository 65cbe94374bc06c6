"""Library items: each kind as WeCom takes it, bad input refused with the field at fault, the store scope of
writers and readers, what members see in the sidebar, suggestions by the customer's tags, folders."""

import pytest
from sqlalchemy import func, select

from bot.extensions import db
from bot.models import AuditEntry, LibraryItem, MediaFile
from bot.services.errors import Forbidden, Invalid, NotFound
from bot.services.library import folders, items
from bot.services.sends import media
from bot.services.users.permissions import NotPermitted
from tests.services.library_helpers import APPID, MP4, PDF, member, png, store, tag, user

KINDS = [
    ("text", {"text": "您好，{customer_name}"}, None, None),
    ("image", {"title": "新品海报"}, ("poster.png", png()), None),
    ("video", {"title": "上妆教程"}, ("howto.mp4", MP4), None),
    ("file", {"title": "价目表"}, ("prices.pdf", PDF), None),
    ("link", {"title": "会员日", "url": "https://example.com/day", "description": "全场 8 折"}, None, ("c.png", png())),
    ("miniprogram", {"title": "积分商城", "appid": APPID, "page": "pages/mall/index.html"}, None, ("m.png", png())),
]


@pytest.mark.parametrize(("kind", "fields", "file", "cover"), KINDS)
def test_each_kind_is_kept_with_its_file_and_audited(app, roles, kind, fields, file, cover):
    with app.app_context():
        item = items.save_item({"kind": kind, **fields}, user(roles["ops"]), file=file, cover=cover)
        db.session.commit()
        saved = db.session.get(LibraryItem, item.id)
        assert saved.kind == kind and saved.title and not saved.archived and saved.stores == []
        assert (saved.file is not None) == (file is not None) and (saved.cover is not None) == (cover is not None)
        if file is not None:
            assert saved.file.content == file[1] and saved.file.created_by == roles["ops"]
        if kind == "text":
            assert saved.title == "您好，{customer_name}" and saved.text == fields["text"]
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "save_library_item"))
        assert entry.target == f"library_item:{item.id}" and entry.actor == "ops"


TOO_LONG_TITLE = "会" * 43  # 129 bytes: one over a link title's 128


@pytest.mark.parametrize(
    ("raw", "file", "cover", "field", "words"),
    [
        ({"kind": "poster"}, None, None, "kind", "类型只能是"),
        ({"kind": "text"}, None, None, "title", "不能为空"),
        ({"kind": "text", "title": "开场白", "text": "  "}, None, None, "text", "不能为空"),
        ({"kind": "text", "title": "长", "text": "字" * 1334}, None, None, "text", "最多 4000 字节"),
        ({"kind": "image", "title": "动图"}, ("a.gif", b"GIF89a-not-a-png-at-all"), None, "file", "JPG 或 PNG"),
        ({"kind": "image", "title": "没有文件"}, None, None, "file", "请上传文件"),
        ({"kind": "image", "title": "太大"}, ("big.png", png()[:8] + b"\0" * (10 * 1024 * 1024)), None, "file", "大小"),
        ({"kind": "video", "title": "不是视频"}, ("v.mp4", PDF), None, "file", "MP4"),
        ({"kind": "file", "title": "空"}, ("e.txt", b"abc"), None, "file", "大小"),
        ({"kind": "link", "title": "页", "url": "ftp://example.com"}, None, None, "url", "http"),
        ({"kind": "link", "title": TOO_LONG_TITLE, "url": "https://e.com"}, None, None, "title", "128 字节"),
        (
            {"kind": "link", "title": "页", "url": "https://e.com", "description": "描" * 171},
            None,
            None,
            "description",
            "512 字节",
        ),
        (
            {"kind": "miniprogram", "title": "商城", "appid": APPID, "page": "pages/mall/index"},
            None,
            ("m.png", png()),
            "page",
            ".html",
        ),
        (
            {"kind": "miniprogram", "title": "商城", "appid": "gh_123", "page": "a.html"},
            None,
            ("m.png", png()),
            "appid",
            "wx",
        ),
        ({"kind": "miniprogram", "title": "商城", "appid": APPID, "page": "a.html"}, None, None, "cover", "上传"),
        (
            {"kind": "miniprogram", "title": "标" * 22, "appid": APPID, "page": "a.html"},
            None,
            ("m.png", png()),
            "title",
            "64 字节",
        ),
        ({"kind": "text", "title": "t", "text": "x", "tag_ids": ["et-unknown"]}, None, None, "tag_ids", "标签库"),
        ({"kind": "text", "title": "t", "text": "x", "store_ids": [999999]}, None, None, "store_ids", "门店不存在"),
        ({"kind": "text", "title": "t", "text": "x", "folder_id": 424242}, None, None, "folder_id", "文件夹"),
        ({"kind": "image", "title": "t", "file_id": 424242}, None, None, "file", "文件不存在"),
    ],
)
def test_bad_input_is_refused_with_the_field_at_fault(app, roles, raw, file, cover, field, words):
    with app.app_context():
        with pytest.raises((Invalid, NotFound)) as refused:
            items.save_item(raw, user(roles["ops"]), file=file, cover=cover)
        assert refused.value.field == field and words in refused.value.text()
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(LibraryItem)) == 0


def test_a_refused_field_costs_no_upload_and_the_daily_quota_holds(app, roles, monkeypatch):
    with app.app_context():
        ops = user(roles["ops"])
        with pytest.raises(Invalid):  # the bad tag is found before the file is kept
            items.save_item({"kind": "image", "title": "t", "tag_ids": ["nope"]}, ops, file=("a.png", png()))
        assert db.session.scalar(select(func.count()).select_from(MediaFile)) == 0
        monkeypatch.setattr(media, "DAILY_BYTES", len(png()) + 10)
        items.save_item({"kind": "image", "title": "一"}, ops, file=("a.png", png()))
        with pytest.raises(media.MediaQuotaExceeded) as over:
            items.save_item({"kind": "image", "title": "二"}, ops, file=("b.png", png("b")))
        assert over.value.status == 429 and over.value.field == "file"


def test_a_kept_file_is_used_by_its_uploader_or_the_roles_that_may_attach_any(app, roles):
    with app.app_context():
        mine = media.save_file("image", "mine.png", png(), user(roles["mgr2"])).id
        theirs = media.save_file("image", "theirs.png", png("x"), user(roles["ops"])).id
        scope = {"store_ids": [store(2).id]}
        made = items.save_item({"kind": "image", "title": "店内海报", "file_id": mine, **scope}, user(roles["mgr2"]))
        assert made.file_id == mine
        with pytest.raises(Forbidden):
            items.save_item({"kind": "image", "title": "别人的", "file_id": theirs, **scope}, user(roles["mgr2"]))
        assert items.save_item({"kind": "image", "title": "运营", "file_id": mine}, user(roles["ops"])).file_id == mine


def _item(owner, title, stores=(), **fields):
    raw = {"kind": "text", "title": title, "text": fields.pop("text", title), "store_ids": list(stores), **fields}
    return items.save_item(raw, owner)


def test_store_managers_write_their_stores_items_and_see_corp_wide_ones(app, roles):
    with app.app_context():
        ops, mgr2, mgr3, viewer = (user(roles[r]) for r in ("ops", "mgr2", "mgr3", "viewer"))
        s2, s3 = store(2).id, store(3).id
        corp_wide = _item(ops, "全公司")
        ours = _item(mgr2, "静安寺店专属", [s2])
        both = _item(ops, "两店共用", [s2, s3])
        with pytest.raises(Forbidden) as no_corp:
            _item(mgr2, "越权", [])
        assert no_corp.value.field == "store_ids"
        with pytest.raises(Forbidden):
            _item(mgr2, "别店", [s3])
        for other in (corp_wide, both):  # seen, not changed: it is not theirs alone
            assert items.get_item(mgr2, other.id) is other and not items.may_edit(mgr2, other)
            with pytest.raises(Forbidden):
                items.save_item({"title": "改"}, mgr2, other)
            with pytest.raises(Forbidden):
                items.set_archived(other, mgr2, True)
        with pytest.raises(NotFound):  # another store's item does not exist for mgr3
            items.get_item(mgr3, ours.id)
        assert {i.title for i in db.session.scalars(items.visible_items(mgr3))} == {"全公司", "两店共用"}
        assert items.may_edit(mgr2, ours) and not items.may_edit(mgr3, ours)
        items.save_item({"title": "静安寺店专属（新）"}, mgr2, ours)
        with pytest.raises(NotPermitted):
            _item(viewer, "只读")
        with pytest.raises(NotPermitted):
            items.set_archived(ours, viewer, True)
        assert len(db.session.scalars(items.visible_items(viewer)).all()) == 3 and not items.may_edit(viewer, ours)
        assert {i.title for i in db.session.scalars(items.visible_items(ops, store_id=0))} == {"全公司"}
        assert {i.title for i in db.session.scalars(items.visible_items(ops, store_id=s3))} == {"两店共用"}


def test_members_see_corp_wide_items_and_their_stores_not_archived(app, roles):
    with app.app_context():
        ops = user(roles["ops"])
        spring = folders.save_folder({"name": "春季上新"}, ops)
        _item(ops, "全公司开场白", text="欢迎光临")
        _item(ops, "静安寺店活动", [store(2).id], folder_id=spring.id)
        _item(ops, "陆家嘴店活动", [store(3).id])
        items.set_archived(_item(ops, "旧活动"), ops, True)
        items.save_item({"kind": "link", "title": "会员日链接", "url": "https://e.com/a"}, ops)
        db.session.commit()
        ours = member("staff0201")
        assert {i.title for i in items.items_for_member(ours)} == {"全公司开场白", "静安寺店活动", "会员日链接"}
        assert [i.title for i in items.items_for_member(ours, query="光临")] == ["全公司开场白"]
        assert [i.title for i in items.items_for_member(ours, query="活动")] == ["静安寺店活动"]
        assert [i.title for i in items.items_for_member(ours, folder_id=spring.id)] == ["静安寺店活动"]
        assert [i.title for i in items.items_for_member(ours, kind="link")] == ["会员日链接"]
        assert len(items.items_for_member(ours, limit=1)) == 1
        assert [i.title for i in items.items_for_member(ours, query="100%_")] == []  # wildcards are text
        assert "陆家嘴店活动" in {i.title for i in items.items_for_member(member("staff0301"))}


def test_suggested_items_name_the_tags_the_customer_has(app, roles):
    with app.app_context():
        ops = user(roles["ops"])
        vip, skin, new = tag("VIP"), tag("护肤"), tag("新客")
        both = _item(ops, "VIP 护肤礼", tag_ids=[vip, skin])
        _item(ops, "VIP 专享", tag_ids=[vip])
        _item(ops, "新客礼", tag_ids=[new])
        _item(ops, "别店 VIP", [store(3).id], tag_ids=[vip])
        items.set_archived(_item(ops, "旧 VIP", tag_ids=[vip]), ops, True)
        db.session.commit()
        suggested = items.suggested_items(member("staff0201"), {vip, skin, "et-personal"})
        assert [(i.title, reasons) for i, reasons in suggested] == [
            ("VIP 护肤礼", sorted(["VIP", "护肤"])),
            ("VIP 专享", ["VIP"]),
        ]
        assert suggested[0][0].id == both.id
        assert items.suggested_items(member("staff0201"), {vip, skin}, limit=1)[0][0].id == both.id
        assert items.suggested_items(member("staff0201"), set()) == []


def test_folders_are_arranged_by_admins_and_operators(app, roles):
    with app.app_context():
        ops = user(roles["ops"])
        spring = folders.save_folder({"name": "春季", "order": 2}, ops)
        folders.save_folder({"name": "夏季", "order": 1}, ops)
        assert [f.name for f in folders.folders()] == ["夏季", "春季"]
        with pytest.raises(Invalid) as same:
            folders.save_folder({"name": "夏季"}, ops)
        assert same.value.field == "name"
        with pytest.raises(NotPermitted):
            folders.save_folder({"name": "店长的"}, user(roles["mgr2"]))
        item = _item(ops, "放在春季", folder_id=spring.id)
        folders.save_folder({"name": "春季上新"}, ops, spring)
        folders.delete_folder(spring, ops)
        db.session.commit()
        assert db.session.get(LibraryItem, item.id).folder_id is None  # the item stays, in no folder
