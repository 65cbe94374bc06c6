"""朋友圈 in the panel: an operator drafts and submits a moment from library items, a mistake is answered on
the form with nothing kept, an admin approves it and the worker posts it through the sandbox; the page shows
its status and the senders WeCom did not know."""

from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Moment
from tests.admin.panel import csrf_from
from tests.admin.test_library_pages import browser
from tests.services.library_helpers import MP4, png, tag, user


def _items(app, roles):
    from bot.services.library import items

    with app.app_context():
        image = items.save_item({"kind": "image", "title": "新品海报"}, user(roles["ops"]), file=("p.png", png("p")))
        video = items.save_item({"kind": "video", "title": "上妆教程"}, user(roles["ops"]), file=("v.mp4", MP4))
        db.session.commit()
        return image.id, video.id


def _post(client, page, action, data):
    token = csrf_from(client.get(page).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token})


def test_an_operator_drafts_an_admin_approves_and_the_moment_is_posted(app, roles, corp, run_worker):
    image_id, video_id = _items(app, roles)
    ops = browser(app, "ops")
    page = ops.get("/admin/moments/new").get_data(as_text=True)
    assert "新建朋友圈" in page and "[图片] 新品海报" in page and "直接发布" not in page
    mixed = {"text": "新品到店", "library_item_ids": [str(image_id), str(video_id)], "senders_kind": "everyone"}
    res = _post(ops, "/admin/moments/new", "/admin/moments", {**mixed, "action": "post"})
    assert res.status_code == 400 and 'data-field="attachments"' in res.get_data(as_text=True)
    assert "最多 9 张图片，或 1 个视频，或 1 个链接" in res.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Moment.id)) is None
        vip = tag("VIP")
    form = {
        "text": "新品到店",
        "library_item_ids": [str(image_id)],
        "senders_kind": "members",
        "userids": ["staff0201", "staff0302"],
        "audience": "tags",
        "tag_ids": [vip],
        "action": "post",  # not an admin: kept as a draft
    }
    res = _post(ops, "/admin/moments/new", "/admin/moments", form)
    assert res.status_code == 302, res.get_data(as_text=True)
    detail = res.headers["Location"]
    assert "提交审批" in ops.get(detail).get_data(as_text=True)
    assert _post(ops, detail, detail + "/submit", {}).status_code == 302
    with app.app_context():
        moment = db.session.scalar(select(Moment))
        assert moment.status == "pending_approval" and moment.tag_ids == [vip]
    assert _post(ops, detail, detail + "/approve", {}).status_code == 403
    corp.users.pop("staff0302")  # left WeCom since the draft
    boss = browser(app, "boss")
    assert _post(boss, detail, detail + "/approve", {}).status_code == 302
    run_worker()
    page = boss.get(detail).get_data(as_text=True)
    assert "已下发给成员" in page and 'id="invalid-senders"' in page and "staff0302" in page
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.target == f"moment:{moment.id}")))
        assert actions == ["save_moment", "submit_moment", "approve_moment"]
    assert corp.calls.count("externalcontact/add_moment_task") == 1
    assert "新品到店" in boss.get("/admin/moments").get_data(as_text=True)


def test_the_moment_page_shows_the_funnel_members_and_comments_and_reminds_and_cancels(
    app, roles, corp, sim, run_worker
):
    import requests

    from bot.services.moments import jobs as tasks
    from tests.conftest import customers_of

    shop = [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0201", "staff0301"])]
    boss = browser(app, "boss")
    form = {"text": "周末到店有礼", "senders_kind": "members", "userids": ["staff0201", "staff0301"]}
    page = _post(boss, "/admin/moments/new", "/admin/moments", {**form, "action": "preview"})
    assert page.status_code == 200 and 'id="moment-preview"' in page.get_data(as_text=True)
    assert "将请 2 位成员发表，约 4 位客户可以看到" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Moment.id)) is None  # a preview saves nothing
    res = _post(boss, "/admin/moments/new", "/admin/moments", {**form, "action": "post", "remind_after_hours": "0"})
    detail = res.headers["Location"]
    run_worker()
    with app.app_context():
        moment = db.session.scalar(select(Moment))
        wecom_id, moment_id = moment.moment_id, moment.id
    fake = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")
    requests.post(f"{fake}sandbox/moments/{wecom_id}/post", json={"userid": "staff0201"}, timeout=10)
    requests.post(f"{fake}sandbox/moments/{wecom_id}/react", json={"userid": "staff0201", "who": shop[1]}, timeout=10)
    with app.app_context():
        tasks.track_moments()
    page = boss.get(detail).get_data(as_text=True)
    assert 'id="funnel-posted">1<' in page and 'id="funnel-reached">2<' in page and 'id="funnel-likes">1<' in page
    assert f"/admin/customers/{shop[1]}" in page  # the liker's profile
    assert 'data-userid="staff0301"' in page and "未发表" in page
    assert _post(boss, detail, detail + "/remind", {"userid": "staff0301"}).status_code == 302
    assert "已提醒 1 位成员" in boss.get(detail).get_data(as_text=True)
    assert '<td class="moment-posted">1 / 2</td>' in boss.get("/admin/moments").get_data(as_text=True)
    assert _post(boss, detail, detail + "/remind", {}).status_code == 302
    assert "已提醒 0 位成员；1 位一小时内已提醒过" in boss.get(detail).get_data(as_text=True)
    csv = boss.get(detail + "/members.csv")
    assert csv.status_code == 200 and "staff0301" in csv.get_data(as_text=True)
    assert _post(boss, detail, detail + "/cancel", {}).status_code == 302
    page = boss.get(detail).get_data(as_text=True)
    assert 'id="moment-cancelled"' in page and 'id="funnel-posted">1<' in page
    assert corp.calls.count("externalcontact/cancel_moment_task") == 1
    with app.app_context():
        assert db.session.get(Moment, moment_id).status == "cancelled"


def test_members_own_moments_are_listed_within_each_users_stores(app, roles, corp):
    from bot.sandbox.moments import post_own_moment
    from bot.services.moments.jobs import sync_member_moments

    post_own_moment(corp, "staff0201", "今天到店的新品", "image")
    post_own_moment(corp, "staff0301", "周末活动")
    with app.app_context():
        assert sync_member_moments() == 2
    for name, seen in (
        ("boss", {"staff0201", "staff0301"}),
        ("viewer", {"staff0201", "staff0301"}),
        ("mgr2", {"staff0201"}),
    ):
        page = browser(app, name).get("/admin/moments")
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert {u for u in ("staff0201", "staff0301") if f'<tr data-userid="{u}">' in text} == seen, name
