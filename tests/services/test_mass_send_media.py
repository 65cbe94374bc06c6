"""A mass send's attachments: kept files uploaded to WeCom once per send (again when WeCom forgot them),
only one's own files unless admin or operator, a daily upload quota per user."""

import io
from datetime import timedelta

import qrcode
from sqlalchemy import update

from bot.extensions import db
from bot.models import MediaFile
from bot.models._time import utcnow
from bot.services.sends import media
from tests.conftest import ApiClient, make_token, make_user
from tests.services.test_mass_sends import everyone, new_send, people  # noqa: F401 - people is a fixture


def png():
    out = io.BytesIO()
    qrcode.make("siyu").save(out)
    return out.getvalue()


def test_attachments_are_uploaded_once_and_again_when_wecom_forgot_them(app, corp, people, admin_api, run_worker):  # noqa: F811 - the fixture
    upload = admin_api.client.post(
        "/api/v1/media",
        data={"kind": "image", "file": (io.BytesIO(png()), "poster.png")},
        headers=admin_api.headers,
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    file_id = upload.get_json()["id"]
    refused = admin_api.client.post(
        "/api/v1/media",
        data={"kind": "image", "file": (io.BytesIO(b"GIF89a-not-a-png"), "x.gif")},
        headers=admin_api.headers,
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400
    with app.app_context():  # a media id WeCom no longer knows, though not 2.5 days old
        kept = db.session.get(MediaFile, file_id)
        kept.media_id, kept.uploaded_at = "media-expired", utcnow()
        db.session.commit()
    attachments = [
        {"type": "image", "file_id": file_id},
        {"type": "link", "title": "会员日", "url": "https://example.com/day", "desc": "8 折"},
    ]
    new_send(admin_api, people, approve=True, attachments=attachments)
    run_worker()
    assert len(corp.mass_tasks) == 4
    payload = next(iter(corp.mass_tasks.values())).payload
    image = payload["attachments"][0]["image"]["media_id"]
    assert image in corp.media and payload["attachments"][1]["link"]["url"] == "https://example.com/day"
    assert corp.calls.count("media/upload") == 1  # once for the whole send, after WeCom's 40007


def upload(api, name="poster.png"):
    res = api.client.post(
        "/api/v1/media",
        data={"kind": "image", "file": (io.BytesIO(png()), name)},
        headers=api.headers,
        content_type="multipart/form-data",
    )
    assert res.status_code == 201, res.get_json()
    return res.get_json()["id"]


def test_a_user_attaches_only_files_they_uploaded_unless_admin_or_operator(app, client, people, admin_api):  # noqa: F811 - the fixture
    """Attachments name a kept file; another user's file is refused unless the user is an admin or an
    operator (issue 20)."""
    manager = ApiClient(client, make_token(app, make_user(app, "jingan", "store_manager", [2])[0]))
    operator = ApiClient(client, make_token(app, make_user(app, "ops", "operator")[0]))
    boss_file, own_file = upload(admin_api), upload(manager)
    body = {"name": "海报", "text": "会员日", "target": everyone(people)}
    refused = manager.post("/api/v1/sends", {**body, "attachments": [{"type": "image", "file_id": boss_file}]})
    assert refused.status_code == 403, refused.get_json()
    assert refused.get_json()["error"]["field"] == "attachments"
    mini = {"type": "miniprogram", "title": "小程序", "appid": "wx1", "page": "/index", "file_id": boss_file}
    assert manager.post("/api/v1/sends", {**body, "attachments": [mini]}).status_code == 403
    assert manager.post("/api/v1/sends/preview", {**body, "attachments": [mini]}).status_code == 403
    assert (
        manager.post("/api/v1/sends", {**body, "attachments": [{"type": "image", "file_id": own_file}]}).status_code
        == 201
    )
    for api in (operator, admin_api):
        for file_id in (boss_file, own_file):
            res = api.post("/api/v1/sends", {**body, "attachments": [{"type": "image", "file_id": file_id}]})
            assert res.status_code == 201, res.get_json()


def test_uploads_have_a_daily_quota_per_user(app, client, admin_api, monkeypatch):
    """Each user may keep so many bytes of attachments a day; beyond that a 429 names the limit (issue 20)."""
    monkeypatch.setattr(media, "DAILY_BYTES", 2 * len(png()), raising=False)
    manager = ApiClient(client, make_token(app, make_user(app, "jingan", "store_manager", [2])[0]))
    upload(manager), upload(manager)
    refused = manager.client.post(
        "/api/v1/media",
        data={"kind": "image", "file": (io.BytesIO(png()), "third.png")},
        headers=manager.headers,
        content_type="multipart/form-data",
    )
    assert refused.status_code == 429, refused.get_json()
    error = refused.get_json()["error"]
    assert error["field"] == "file" and error["code"] == "quota_exceeded" and "MB" in error["message"]
    upload(admin_api)  # the quota is each user's own
    with app.app_context():  # a day later the quota is free again
        db.session.execute(update(MediaFile).values(created_at=utcnow() - timedelta(days=1, minutes=1)))
        db.session.commit()
    upload(manager)
