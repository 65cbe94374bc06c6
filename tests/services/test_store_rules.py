"""Per-store settings through the panel: 删人提醒 at once or in the managers' daily digest, and a leaver's
customers and groups handed over by rule after N days unassigned — a system handover, audited, run by the
worker against the sandbox."""

from datetime import timedelta
from itertools import count

from sqlalchemy import select

from bot.extensions import db
from bot.models import AuditEntry, Handover, ItemStatus, Store
from bot.models._time import utcnow
from bot.sandbox.handover import resign
from bot.services import corp_time
from bot.services.assistant import digest
from bot.services.directory.sync import sync_directory
from bot.services.groups import jobs as group_jobs
from bot.services.handover import jobs as tasks
from tests.admin.panel import post_form, sign_in
from tests.conftest import customers_of, make_user


def store_id(app, department_id):
    with app.app_context():
        return db.session.scalar(select(Store.id).where(Store.department_id == department_id))


MANAGERS = count(1)


def set_rules(app, client, department_id, **fields):
    """A manager of the store (a new panel user, signed in on a client of their own) saves its settings."""
    username = f"mgr{department_id}r{next(MANAGERS)}"
    _, password = make_user(app, username, "store_manager", stores=[department_id])
    client = app.test_client()
    sign_in(client, username, password)
    action = f"/admin/handovers/stores/{store_id(app, department_id)}"
    data = {"deletion_alerts": "now", "handover_after_days": "", "handover_to": "", **fields}
    return post_form(client, "/admin/handovers", action, data)


def deletion_alerts(corp, since):
    return [m for m in corp.app_messages[since:] if "删人提醒" in m.get("text", {}).get("content", "")]


def test_deletions_of_a_digest_store_go_in_the_digest(app, sim, corp, run_worker, client):
    a, b = (c.external_userid for c in customers_of(app, sim, run_worker, ["staff0302", "staff0202"], each=1))
    assert set_rules(app, client, 3, deletion_alerts="digest").status_code == 302
    assert set_rules(app, client, 2, deletion_alerts="weekly").status_code == 400  # not a choice
    before = len(corp.app_messages)
    sim.member_deletes_customer(a, "staff0302")  # store 3: in the digest
    sim.member_deletes_customer(b, "staff0202")  # store 2: at once
    run_worker()
    (alert,) = deletion_alerts(corp, before)
    assert alert["touser"] == "staff0201"
    with app.app_context():
        now = utcnow()
        stores = db.session.scalars(select(Store).where(Store.department_id.in_([2, 3]))).all()
        by_dept = {s.department_id: s for s in stores}
        numbers = digest.figures([by_dept[3].id], corp_time.today(), now)
        assert numbers["deleted_by_members"] == 1
        assert "删人提醒：员工删除客户 1 位" in digest.text([by_dept[3]], corp_time.today(), numbers)
        assert "deleted_by_members" not in digest.figures([by_dept[2].id], corp_time.today(), now)
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "set_store_rules"))
        assert entry.actor.startswith("mgr3r") and '"digest"' in entry.detail


def test_a_leaver_is_handed_over_by_the_stores_rule_after_n_days(app, sim, corp, run_worker, client):
    people = [c.external_userid for c in customers_of(app, sim, run_worker, ["staff0202"], each=3)]
    group, _ = sim.member_creates_group("staff0202", "老客群", people[:1])
    run_worker()
    refused = set_rules(app, client, 2, handover_after_days="3", handover_to="staff0301")  # another store's
    assert refused.status_code == 400
    assert set_rules(app, client, 2, handover_after_days="3").status_code == 302  # to the store's manager
    resign(corp, "staff0202")
    with app.app_context():
        sync_directory()
        db.session.commit()
        group_jobs.sync_groups()
    run_worker()
    with app.app_context():
        assert tasks.handover_by_rule() == {"handovers": 0}  # left today: not yet
    corp.resigned["staff0202"]["dimission_time"] -= 4 * 86400  # four days on
    with app.app_context():
        assert tasks.handover_by_rule() == {"handovers": 1}
        assert tasks.handover_by_rule() == {"handovers": 0}  # nothing waits any more
    run_worker()
    with app.app_context():
        handover = db.session.scalar(select(Handover))
        assert (handover.from_userid, handover.to_userid, handover.created_by_id) == ("staff0202", "staff0201", None)
        assert {i.status for i in handover.customers} == {ItemStatus.waiting}
        assert [g.status for g in handover.groups] == [ItemStatus.done]
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "create_handover"))
        assert entry.actor == "system" and '"rule": "store:2"' in entry.detail
        assert handover.created_at > utcnow() - timedelta(minutes=5)
    assert corp.groups[group.chat_id].owner == "staff0201"
