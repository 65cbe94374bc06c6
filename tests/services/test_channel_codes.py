"""Channel codes beyond the first scan: remarks, daily caps and backups, expiry, QR images and posters,
personal codes for all staff and the assistant's answers, statistics over a date range."""

import io
from datetime import timedelta

import pytest
import requests
from PIL import Image
from sqlalchemy import select, update

from bot.extensions import db
from bot.models import Channel, FollowRelation, FollowStatus, Staff, Store
from bot.models._time import utcnow
from bot.services.assistant import commands as assistant
from bot.services.channels import qr_images
from bot.services.channels.jobs import create_personal_codes, enforce_channel_limits
from bot.services.customers import growth
from tests.admin.panel import csrf_from, post_form, sign_in
from tests.conftest import make_token, make_user
from tests.services.test_acquisition import follow_of, new_channel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_remark_template_is_set_in_wecom_and_the_mirror(app, api, sim, corp, run_worker):
    new_channel(api, corp, remark_template="{customer_name}-{store_name}")
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    expected = f"{contact.name}-静安寺店"
    assert corp.contacts[contact.external_userid].follows["staff0201"].remark == expected
    assert follow_of(app, contact.external_userid).remark == expected


def test_a_long_remark_is_cut_to_wecoms_20_characters(app, api, sim, corp, run_worker):
    new_channel(api, corp, remark_template="来自静安门店海报活动的客户{customer_name}，请尽快跟进并邀请入群")
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    remark = corp.contacts[contact.external_userid].follows["staff0201"].remark
    assert len(remark) == 20 and remark.startswith("来自静安门店海报活动的客户")


def test_a_capped_member_hands_over_to_the_backup_until_the_next_day(app, api, sim, corp, run_worker):
    channel = new_channel(api, corp, daily_cap=1, backup_staff=["staff0202"])
    way = corp.contact_ways[channel["config_id"]]
    assert way["type"] == 2 and way["user"] == ["staff0201"]  # type 2: the routing may change
    first, _ = sim.scan(channel["config_id"])
    run_worker()
    assert way["user"] == ["staff0202"]  # staff0201 reached the cap: WeCom now routes to the backup
    second, _ = sim.scan(channel["config_id"])
    run_worker()
    assert next(iter(second.follows)) == "staff0202"
    assert api.get(f"/api/v1/channels/{channel['id']}").get_json()["routed_to"] == ["staff0202"]
    with app.app_context():
        # A day later (the adds move to yesterday), the periodic pass gives the member the code back.
        db.session.execute(update(FollowRelation).values(added_at=utcnow() - timedelta(days=1)))
        db.session.commit()
        assert enforce_channel_limits() == {"expired": 0, "rerouted": 1}
    assert way["user"] == ["staff0201"]


def test_an_expired_code_leaves_wecom_and_keeps_its_customers(app, api, sim, corp, run_worker):
    soon = (utcnow() + timedelta(minutes=5)).isoformat() + "Z"
    channel = new_channel(api, corp, expires_at=soon)
    contact, _ = sim.scan(channel["config_id"])
    run_worker()
    with app.app_context():
        db.session.execute(update(Channel).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert enforce_channel_limits() == {"expired": 1, "rerouted": 0}
        assert enforce_channel_limits() == {"expired": 0, "rerouted": 0}  # once
    assert channel["config_id"] not in corp.contact_ways
    assert api.get(f"/api/v1/channels/{channel['id']}").get_json()["active"] is False
    assert follow_of(app, contact.external_userid).channel_id == channel["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"daily_cap": "ten"}, "daily_cap"),
        ({"daily_cap": 0}, "daily_cap"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"remark_template": "x" * 65}, "remark_template"),
        ({"backup_staff": "staff0202"}, "backup_staff"),
    ],
)
def test_bad_limits_are_400_with_the_field(api, corp, body, field):
    res = api.post("/api/v1/channels", {"name": "n", "staff": ["staff0201"], "state": "s-limits", **body})
    assert res.status_code == 400 and field in res.get_json()["error"]["message"]
    assert corp.contact_ways == {}


def test_patch_changes_limits_and_can_clear_them(api, corp):
    channel = new_channel(api, corp, staff=["staff0201", "staff0301"])
    res = api.patch(f"/api/v1/channels/{channel['id']}", {"daily_cap": 5, "backup_staff": ["staff0202"]})
    assert res.status_code == 200 and res.get_json()["daily_cap"] == 5
    assert res.get_json()["backup_staff"] == ["staff0202"]
    cleared = api.patch(f"/api/v1/channels/{channel['id']}", {"daily_cap": None}).get_json()
    assert cleared["daily_cap"] is None and cleared["backup_staff"] == ["staff0202"]
    single = new_channel(api, corp, state="single-1")
    refused = api.patch(f"/api/v1/channels/{single['id']}", {"staff": ["staff0201", "staff0202"]})
    assert refused.status_code == 400 and refused.get_json()["error"]["message"].startswith("staff")


def test_the_code_downloads_as_png_and_prints_as_a_poster(app, api, corp):
    channel = new_channel(api, corp)
    png = api.get(f"/api/v1/channels/{channel['id']}/qr.png").data
    assert png.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(png)).size[0] >= 100
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    download = browser.get(f"/admin/channels/{channel['id']}/qr.png?download=1")
    assert download.status_code == 200 and download.headers["Content-Disposition"].startswith("attachment")
    assert download.data == png  # kept with the channel: fetched from WeCom once
    poster = browser.get(f"/admin/channels/{channel['id']}/poster.png?title=双十一到店礼")
    assert poster.status_code == 200 and Image.open(io.BytesIO(poster.data)).size == qr_images.POSTER_SIZE


def test_without_a_cjk_font_the_poster_says_so(app, api, corp, monkeypatch):
    channel = new_channel(api, corp)
    monkeypatch.setattr(qr_images, "FONT_CANDIDATES", ())
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    res = browser.get(f"/admin/channels/{channel['id']}/poster.png")
    assert res.status_code == 409 and "fonts-wqy-microhei" in res.get_data(as_text=True)


def test_scanning_the_sandbox_code_adds_a_customer_through_it(app, api, corp, sim, client, run_worker):
    channel = new_channel(api, corp)
    qr_url = channel["qr_code"]
    fake = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")

    assert requests.get(qr_url, timeout=5).content.startswith(PNG_MAGIC)
    scanned = requests.post(f"{fake}sandbox/scan/{channel['config_id']}", timeout=10).json()
    assert scanned["member"] == "staff0201" and scanned["statuses"] == [200]
    run_worker()
    assert len(corp.welcomes_sent) == 1
    assert requests.get(f"{fake}sandbox/scan/nope", timeout=5).status_code == 404


def _store_id(app, name):
    with app.app_context():
        return db.session.scalar(select(Store.id).where(Store.name == name))


def test_personal_codes_for_a_store_once_each_and_sent_on_request(app, api, corp, sim, run_worker):
    store = _store_id(app, "静安寺店")
    with app.app_context():
        assert create_personal_codes(store, "我是{staff_name}，欢迎！", []) == {"made": 2, "failed": 0}
        assert create_personal_codes(store, "", []) == {"made": 0, "failed": 0}  # a re-run makes no duplicates
        owners = db.session.execute(select(Staff.userid, Channel.state).join(Channel.owner)).all()
    assert sorted(u for u, _ in owners) == ["staff0201", "staff0202"]
    assert len({s for _, s in owners}) == 2 and len(corp.contact_ways) == 2
    sim.member_messages_app("staff0201", "我的二维码")
    sim.member_messages_app("staff0301", "我的二维码")  # another store: no code yet
    run_worker()
    image = next(m for m in corp.app_messages if m["msgtype"] == "image")
    assert image["touser"] == "staff0201" and image["image"]["media_id"] in corp.media
    assert corp.media[image["image"]["media_id"]].startswith(PNG_MAGIC)
    [text] = [m for m in corp.app_messages if m["msgtype"] == "text"]
    assert text["touser"] == "staff0301" and "还没有专属渠道码" in text["text"]["content"]
    sim.member_messages_app("staff0201", "二维码")
    run_worker()
    assert len(corp.media) == 1  # uploaded once: the media id is reused for its 3 days


def test_the_assistant_answers_a_message_once(app, corp, sim, ctx):
    from bot.services.directory.sync import sync_directory

    sync_directory()
    assert assistant.reply("staff0201", "帮助", "m-1") == "help"
    assert assistant.reply("staff0201", "帮助", "m-1") == "already answered"
    assert assistant.reply("staff0201", "今天天气怎么样", "m-2") == "help"
    assert assistant.reply("someone", "排行", "m-3") == "sender is not a known member"
    assert [m["text"]["content"].splitlines()[0] for m in corp.app_messages] == ["私域助手可以：", "私域助手可以："]


def test_the_assistant_tells_a_member_their_rank(app, api, corp, sim, run_worker):
    for userid in ("staff0201", "staff0201", "staff0202", "staff0301"):
        sim.customer_adds(userid=userid)
    sim.member_messages_app("staff0202", "排行")
    run_worker()
    [answer] = [m for m in corp.app_messages if m["msgtype"] == "text"]
    lines = answer["text"]["content"].splitlines()
    assert lines[1] == "新增 1，流失 0，净增长 1"
    assert lines[2] == "全公司：第 2 名 / 共 3 人" and lines[3] == "静安寺店：第 2 名 / 共 2 人"


def test_retention_and_the_variant_split_over_a_date_range(app, api, sim, corp, run_worker):
    channel = new_channel(
        api, corp, welcome=[{"label": "A", "text": "甲", "weight": 1}, {"label": "B", "text": "乙", "weight": 1}]
    )
    contacts = [sim.scan(channel["config_id"])[0] for _ in range(6)]
    run_worker()
    lost = contacts[0]
    sim.customer_deletes_member(lost.external_userid, "staff0201")
    run_worker()
    with app.app_context():
        # Move every add 10 days back; the loss came 2 days after its add: not retained at 7 days.
        added = utcnow() - timedelta(days=10)
        db.session.execute(update(FollowRelation).values(added_at=added))
        db.session.execute(
            update(FollowRelation)
            .where(FollowRelation.status == FollowStatus.deleted_by_customer)
            .values(lost_at=added + timedelta(days=2))
        )
        db.session.commit()
    stats = api.get(f"/api/v1/channels/{channel['id']}").get_json()["stats"]
    assert (stats["added"], stats["lost"], stats["eligible_7d"], stats["retained_7d"]) == (6, 1, 6, 5)
    assert stats["retention_7d"] == round(5 / 6, 4)
    assert sum(v["added"] for v in stats["variants"]) == 6 and {v["name"] for v in stats["variants"]} <= {"A", "B"}
    day = (utcnow() - timedelta(days=10)).date()
    only_that_day = api.get(f"/api/v1/channels/{channel['id']}?start={day}&end={day}").get_json()["stats"]
    assert (only_that_day["added"], only_that_day["lost"]) == (6, 0)
    last_week = api.get(f"/api/v1/channels/{channel['id']}?days=7").get_json()["stats"]
    assert (last_week["added"], last_week["lost"]) == (0, 0)


def test_a_window_falls_back_to_30_days_on_junk():
    assert growth.window(30).days == 30
    assert growth.window(12).days == 30
    assert growth.window(None, "2026-01-01", "2026-01-31").days == 31
    assert growth.window(None, "2026-02-01", "2026-01-01").days == 30  # reversed
    assert growth.window(None, "2020-01-01", "2026-01-01").days == 30  # over a year
    assert growth.window(None, "'; DROP TABLE x;--", "2026-01-01").days == 30


def test_channel_pages_show_code_stats_and_edit(app, api, corp, sim, run_worker):
    channel = new_channel(api, corp)
    sim.scan(channel["config_id"])
    run_worker()
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    page = browser.get(f"/admin/channels/{channel['id']}").get_data(as_text=True)
    assert 'id="channel-qr"' in page and 'id="stat-added">1<' in page and "生成可打印海报" in page
    url = f"/admin/channels/{channel['id']}"
    form = {"name": "静安海报（新）", "staff": ["staff0201"], "welcome": "新欢迎语", "daily_cap": "3"}
    assert post_form(browser, url, url, form).status_code == 302
    way = corp.contact_ways[channel["config_id"]]
    assert way["remark"] == "静安海报（新）"
    got = api.get(f"/api/v1/channels/{channel['id']}").get_json()
    assert got["daily_cap"] == 3 and got["welcome"][0]["text"] == "新欢迎语"
    bad = post_form(browser, url, url, {**form, "daily_cap": "0"})
    assert bad.status_code == 400 and "1–10000 之间" in bad.get_data(as_text=True)


def test_personal_codes_from_the_panel(app, corp, sim, run_worker):
    from bot.services.directory.sync import sync_directory

    with app.app_context():
        sync_directory()
        db.session.commit()
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    token = csrf_from(browser.get("/admin/channels").get_data(as_text=True))
    res = browser.post("/admin/channels/personal", data={"personal-csrf_token": token, "personal-store": "0"})
    assert res.status_code == 302 and res.location.endswith("/admin/channels/new")  # where its progress shows
    run_worker()
    assert len(corp.contact_ways) == 4
    assert browser.get("/admin/channels/personal/progress").get_json()["made"] == 4
    junk = browser.post("/admin/channels/personal", data={"personal-csrf_token": token, "personal-store": "999"})
    assert junk.status_code == 400
    manager = app.test_client()
    sign_in(manager, "m2", make_user(app, "m2", "store_manager", [2])[1])
    token = csrf_from(manager.get("/admin/channels").get_data(as_text=True))
    denied = manager.post("/admin/channels/personal", data={"personal-csrf_token": token, "personal-store": "2"})
    assert denied.status_code == 403
    headers = {"Authorization": f"Bearer {make_token(app, make_user(app, 'v', 'viewer')[0])}"}
    assert len(app.test_client().get("/api/v1/channels", headers=headers).get_json()["items"]) == 4


def test_a_code_for_a_whole_store(app, api, corp):
    store = _store_id(app, "静安寺店")
    res = api.post("/api/v1/channels", {"name": "静安全店", "stores": [store], "state": "jingan-all"})
    assert res.status_code == 201, res.get_json()
    assert sorted(corp.contact_ways[res.get_json()["config_id"]]["user"]) == ["staff0201", "staff0202"]
    assert api.post("/api/v1/channels", {"name": "x", "stores": ["静安"]}).status_code == 400
    manager = {"Authorization": f"Bearer {make_token(app, make_user(app, 'm3', 'store_manager', [3])[0])}"}
    client = app.test_client()
    assert client.post("/api/v1/channels", json={"name": "y", "stores": [store]}, headers=manager).status_code == 403


def test_rankings_show_retention_over_a_date_range(app, sim, corp, run_worker):
    contacts = [sim.customer_adds(userid="staff0201")[0] for _ in range(2)]
    sim.customer_deletes_member(contacts[0].external_userid, "staff0201")
    run_worker()
    with app.app_context():
        added = utcnow() - timedelta(days=9)
        db.session.execute(update(FollowRelation).values(added_at=added))
        db.session.execute(
            update(FollowRelation)
            .where(FollowRelation.status == FollowStatus.deleted_by_customer)
            .values(lost_at=added + timedelta(days=1))
        )
        db.session.commit()
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    day = added.date()
    page = browser.get(f"/admin/rankings?start={day}&end={day + timedelta(days=1)}").get_data(as_text=True)
    assert "<td>2</td><td>1</td><td><b>1</b></td><td>50%</td>" in page
    assert f"统计 {day} 至 {day + timedelta(days=1)}" in page


def test_welcome_attachments_go_out_with_the_text(app, api, sim, corp, run_worker):
    link = {"msgtype": "link", "link": {"title": "会员礼", "url": "https://example.com/gift", "picurl": ""}}
    new_channel(api, corp, welcome=[{"text": "欢迎{customer_name}", "attachments": [link]}])
    contact, _ = sim.customer_adds(userid="staff0201", state="jingan-poster")
    run_worker()
    [sent] = corp.welcomes_sent
    assert sent["text"]["content"] == f"欢迎{contact.name}" and sent["attachments"] == [link]


def _panel(app):
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    return browser


def _point_code_at(app, channel_id, url):
    with app.app_context():
        db.session.execute(update(Channel).where(Channel.id == channel_id).values(qr_code=url, qr_png=None))
        db.session.commit()


def test_a_code_image_wecom_no_longer_serves_is_a_502_that_says_what_failed(app, api, corp):
    channel = new_channel(api, corp)
    base = app.config["SIYU"].wecom_api_base.removesuffix("cgi-bin/")
    _point_code_at(app, channel["id"], f"{base}sandbox/qr/no-such-code.png")
    res = _panel(app).get(f"/admin/channels/{channel['id']}/qr.png")
    assert res.status_code == 502
    text = res.get_data(as_text=True)
    assert "下载二维码图片失败" in text and "HTTP 404" in text and "None" not in text


def test_a_code_image_from_a_host_that_is_not_wecoms_is_never_fetched(app, api, corp):
    channel = new_channel(api, corp)
    _point_code_at(app, channel["id"], "http://169.254.169.254/latest/meta-data/")
    res = _panel(app).get(f"/admin/channels/{channel['id']}/qr.png")
    assert res.status_code == 502 and "169.254.169.254 is not one of WeCom's image hosts" in res.get_data(as_text=True)


def test_a_decompression_bomb_for_a_code_image_is_refused_not_decoded(app, api, corp, monkeypatch):
    channel = new_channel(api, corp)
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, format="PNG")  # 64 million pixels in a few kilobytes
    assert len(bomb.getvalue()) < 100_000
    from bot.wecom.client import WeComClient

    monkeypatch.setattr(WeComClient, "download", lambda self, url, max_bytes=0: bomb.getvalue())
    _point_code_at(app, channel["id"], "https://wework.qpic.cn/wwpic/bomb")
    res = _panel(app).get(f"/admin/channels/{channel['id']}/qr.png")
    assert res.status_code == 409 and "不是图片" in res.get_data(as_text=True)


@pytest.mark.parametrize(
    ("state", "header"),
    [
        ("静安店海报", "filename*=UTF-8''%E9%9D%99%E5%AE%89%E5%BA%97%E6%B5%B7%E6%8A%A5.png"),
        ('a"b; filename=x.exe', 'filename="a\\"b; filename=x.exe.png"'),
        ("line\r\nbreak", "filename=linebreak.png"),
    ],
)
def test_a_code_downloads_under_its_state_whatever_the_state_holds(app, api, corp, state, header):
    channel = new_channel(api, corp, state=state)
    res = _panel(app).get(f"/admin/channels/{channel['id']}/qr.png?download=1")
    assert res.status_code == 200 and res.data.startswith(PNG_MAGIC)
    disposition = res.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and header in disposition
    assert res.headers["Cache-Control"] == "private, max-age=300"
