"""The full customer sync: batch/get_by_user page by page into the mirror, resumable, repairing drift."""

import json

import pytest
from sqlalchemy import func, select

from bot.extensions import db, redis_conn
from bot.jobs.progress import read_progress
from bot.models import Customer, FollowRelation, FollowStatus
from bot.services.customers import sync as customer_sync
from bot.services.customers.jobs import CUSTOMER_SYNC, sync_customers
from bot.services.directory.jobs import sync_directory
from bot.services.tags.jobs import sync_corp_tags
from bot.wecom.errors import WeComError


@pytest.fixture
def synced(app, sim):
    with app.app_context():
        sync_directory()
        sync_corp_tags()


def _relations(app):
    with app.app_context():
        return {
            (c, s.value)
            for c, s in db.session.execute(
                select(Customer.external_userid, FollowRelation.status).join(FollowRelation.customer)
            )
        }


def test_a_full_sync_fills_the_mirror_and_repairs_drift(app, sim, corp, run_worker, synced, monkeypatch):
    monkeypatch.setattr(customer_sync, "PAGE_SIZE", 2)  # several pages per batch of members
    known, _ = sim.customer_adds(userid="staff0201")
    gone, _ = sim.customer_adds(userid="staff0202")
    run_worker()
    # Behind Siyu's back (no callbacks): five customers arrive, one is deleted by the member, one is tagged.
    quiet = [corp.add_contact(f"静默{n}", 1, "staff0301")[0] for n in range(5)]
    del corp.contacts[gone.external_userid].follows["staff0202"]
    vip = next(t for t, (_, name) in corp.tag_index().items() if name == "VIP")
    corp.contacts[known.external_userid].follows["staff0201"].tag_ids = [vip]
    with app.app_context():
        counts = sync_customers()
    assert counts == {"seen": 6, "new_customers": 5, "new_relations": 5, "drift_closed": 1}
    relations = _relations(app)
    assert {(c.external_userid, "active") for c in quiet} <= relations
    assert (gone.external_userid, FollowStatus.deleted_by_staff.value) in relations
    with app.app_context():
        follow = db.session.scalar(
            select(FollowRelation).where(FollowRelation.customer.has(external_userid=known.external_userid))
        )
        assert [t.tag_name for t in follow.tags] == ["VIP"]
    progress = read_progress(CUSTOMER_SYNC)
    assert progress["state"] == "done" and progress["drift_closed"] == 1
    with app.app_context():
        assert sync_customers()["drift_closed"] == 0  # a second pass finds nothing to repair


def test_a_crashed_sync_resumes_where_it_stopped(app, sim, corp, synced, monkeypatch):
    monkeypatch.setattr(customer_sync, "PAGE_SIZE", 2)
    for n in range(6):
        corp.add_contact(f"客{n}", 1, "staff0201")
    corp.inject("externalcontact/batch/get_by_user", 60011)  # the first call is refused…
    with app.app_context(), pytest.raises(WeComError):
        sync_customers()
    assert read_progress(CUSTOMER_SYNC)["state"] == "failed"
    real = customer_sync.run

    def crash_after_two_pages(checkpoint, on_page):
        pages = []

        def counting(cp):
            on_page(cp)
            pages.append(cp.cursor)
            if len(pages) == 2:
                raise RuntimeError("worker killed")

        return real(checkpoint, counting)

    monkeypatch.setattr(customer_sync, "run", crash_after_two_pages)
    with app.app_context(), pytest.raises(RuntimeError):
        sync_customers()
    saved = json.loads(redis_conn.client.get("siyu:checkpoint:sync_customers"))
    assert saved["cursor"] and saved["counts"]["seen"] == 4
    monkeypatch.setattr(customer_sync, "run", real)
    corp.calls.clear()
    with app.app_context():
        counts = sync_customers()
        assert db.session.scalar(select(func.count(Customer.id))) == 6
    # Resumed from the stored cursor: only the rest of the pages were read again.
    assert corp.calls.count("externalcontact/batch/get_by_user") == 1
    assert counts["seen"] == 6 and counts["new_customers"] == 6
    assert redis_conn.client.get("siyu:checkpoint:sync_customers") is None


def test_the_panel_starts_the_sync_and_shows_what_it_found(app, sim, corp, synced, run_worker):
    from tests.admin.panel import post_form, sign_in
    from tests.conftest import make_user

    corp.add_contact("静默客", 1, "staff0201")
    browser = app.test_client()
    sign_in(browser, "boss", make_user(app, "boss", "admin")[1])
    assert post_form(browser, "/admin/staff", "/admin/staff/sync-customers", {}).status_code == 302
    run_worker()
    progress = browser.get("/admin/staff/sync-customers/progress").get_json()
    assert progress["state"] == "done" and "新客户 1" in progress["message"]
    assert "修复漂移 0" in browser.get("/admin/staff").get_data(as_text=True)
    viewer = app.test_client()
    sign_in(viewer, "v", make_user(app, "v", "viewer")[1])
    assert post_form(viewer, "/admin/staff", "/admin/staff/sync-customers", {}).status_code == 403
