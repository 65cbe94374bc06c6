"""The panel's Webhook page: admins only; the secret shown once; a test event delivered to a real receiver
and in the log; replay, rotation, deletion; refusals named on the form; the banner of a switched-off one."""

import re
from datetime import timedelta

import time_machine
from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, WebhookDelivery, WebhookEndpoint
from bot.models._time import utcnow
from bot.services.webhooks import jobs
from tests.admin.panel import post_form, sign_in
from tests.conftest import make_user
from tests.services.webhook_helpers import receiving, unpause


def admin_client(app, client):
    _, password = make_user(app, "hooks-admin", "admin")
    sign_in(client, "hooks-admin", password)
    return client


def create(client, url, types=("customer.added", "customer.lost"), **extra):
    return post_form(
        client,
        "/admin/webhooks",
        "/admin/webhooks",
        {"url": url, "description": "CRM 测试", "event_types": list(types), **extra},
    )


def test_only_admins_manage_webhooks(app, client):
    for role in ("operator", "store_manager", "viewer"):
        _, password = make_user(app, f"u-{role}", role)
        other = app.test_client()
        sign_in(other, f"u-{role}", password)
        assert other.get("/admin/webhooks").status_code == 403
        assert "Webhook" not in other.get("/admin/").get_data(as_text=True).split("<main>")[0]
    admin = admin_client(app, client)
    assert admin.get("/admin/webhooks").status_code == 200


def test_an_endpoint_is_registered_tested_and_its_log_read(app, client, run_worker):
    admin = admin_client(app, client)
    with receiving() as crm:
        res = create(admin, crm.url, alert_userids="staff0201, staff0202")
        assert res.status_code == 200 and res.headers["Cache-Control"] == "no-store"
        page = res.get_data(as_text=True)
        secret = re.search(r"<code>(whsec_[^<]+)</code>", page).group(1)
        crm.secrets = [secret]
        with app.app_context():
            endpoint = db.session.scalar(select(WebhookEndpoint))
            assert endpoint.alert_userids == ["staff0201", "staff0202"]
            assert endpoint.event_types == ["customer.added", "customer.lost"]
        detail = f"/admin/webhooks/{endpoint.id}"
        assert secret not in admin.get(detail).get_data(as_text=True)  # shown once
        assert secret not in admin.get("/admin/webhooks").get_data(as_text=True)

        res = post_form(admin, detail, f"{detail}/test", {})
        assert res.status_code == 302
        run_worker()
        (ping,) = crm.received
        assert ping.type == "ping" and ping.signed and ping.body["data"]["endpoint_id"] == endpoint.id
        log = admin.get(detail).get_data(as_text=True)
        assert ping.event_id in log and "已送达" in log and "200" in log

        # replayed: the same event again, a second attempt in the log
        with app.app_context():
            delivery_id = db.session.scalar(select(WebhookDelivery.id))
        post_form(admin, detail, f"{detail}/deliveries/{delivery_id}/replay", {})
        run_worker()
        assert [r.event_id for r in crm.received] == [ping.event_id] * 2

        # rotated: the new secret shown once, both sign for a while
        res = post_form(admin, detail, f"{detail}/rotate", {})
        new = re.search(r"<code>(whsec_[^<]+)</code>", res.get_data(as_text=True)).group(1)
        assert new != secret and res.headers["Cache-Control"] == "no-store"
        crm.secrets = [new]
        post_form(admin, detail, f"{detail}/test", {})
        run_worker()
        assert crm.received[-1].signed

        # edited, then deleted with its queue; every write in the audit log
        res = post_form(
            admin,
            detail,
            detail,
            {"url": crm.url, "description": "新 CRM", "event_types": ["customer.added"], "enabled": "y"},
        )
        assert res.status_code == 302
        assert post_form(admin, detail, f"{detail}/delete", {}).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(WebhookEndpoint)) is None
        actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.target == f"webhook:{endpoint.id}"))
        assert set(actions) >= {
            "create_webhook",
            "test_webhook",
            "replay_webhook",
            "rotate_webhook_secret",
            "update_webhook",
            "delete_webhook",
        }


def test_bad_endpoints_are_refused_on_the_form(app, client):
    admin = admin_client(app, client)
    for url, expected in [
        ("ftp://crm.example.com/x", "https://"),
        ("http://user:pw@crm.example.com/x", "用户名或密码"),
        ("not a url", "https://"),
    ]:
        res = create(admin, url)
        assert res.status_code == 400 and expected in res.get_data(as_text=True), url
    res = create(admin, "http://127.0.0.1:9/x", types=())
    assert res.status_code == 400 and "至少选择一种事件" in res.get_data(as_text=True)
    res = create(admin, "http://127.0.0.1:9/x", types=("customer.added", "no.such"))
    assert res.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(WebhookEndpoint)) is None


def test_a_switched_off_endpoint_is_a_banner_on_every_page_until_switched_back_on(app, client, sim, run_worker):
    admin = admin_client(app, client)
    with receiving(mode="fail") as crm:
        create(admin, crm.url)
        with app.app_context():
            endpoint = db.session.scalar(select(WebhookEndpoint))
        post_form(admin, f"/admin/webhooks/{endpoint.id}", f"/admin/webhooks/{endpoint.id}/test", {})
        run_worker()
        unpause(app)
        with time_machine.travel(utcnow() + timedelta(hours=25)), app.app_context():
            jobs.send_webhooks()
        page = admin.get("/admin/customers").get_data(as_text=True)
        assert f'id="webhook-off-{endpoint.id}"' in page and "已被自动停用" in page
        crm.mode = "ok"
        post_form(
            admin,
            f"/admin/webhooks/{endpoint.id}",
            f"/admin/webhooks/{endpoint.id}",
            {"url": crm.url, "event_types": ["customer.added"], "enabled": "y"},
        )
        assert "webhook-off-" not in admin.get("/admin/customers").get_data(as_text=True)
