"""Customer-list benchmark: the panel's customer pages on PostgreSQL with a million customers.

    .venv/bin/python bench/customers.py [--customers 1000000]

Fills a scratch database (default siyu_bench_customers, schema dropped and recreated) with stores, staff,
customers, one follow relation each and a tag on every third, using generate_series on the server, then
times the panel's own requests through the app (query + rendering): the first page, a page deep in the
list (keyset), filters by member, store, tag, channel and date, a name search, a store manager's scoped
list and the dashboard. Prints the median and the worst of several runs of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

#: stores, staff and who works where: every database benchmark starts from this directory
DIRECTORY_SEED = """
INSERT INTO stores (department_id, name, parent_department_id, "order", active, synced_at)
SELECT 100 + s, '门店' || s, 1, s, true, now() FROM generate_series(1, %(stores)s) s;
INSERT INTO staff (userid, name, position, main_department_id, wecom_status, active, synced_at)
SELECT 'staff' || m, '员工' || m, '导购', 100 + (m %% %(stores)s) + 1, 1, true, now()
FROM generate_series(1, %(staff)s) m;
INSERT INTO staff_stores (staff_id, store_id)
SELECT st.id, so.id FROM staff st JOIN stores so ON so.department_id = st.main_department_id;
"""

SEED = """
INSERT INTO tag_groups (group_id, name, "order", deleted, synced_at)
VALUES ('etbenchgroup', '客户等级', 0, false, now());
INSERT INTO tags (tag_id, group_pk, name, "order", deleted, synced_at)
SELECT 'etbench' || t, (SELECT id FROM tag_groups LIMIT 1), '等级' || t, t, false, now() FROM generate_series(1, 10) t;
INSERT INTO customers (external_userid, name, avatar, type, gender, corp_name, notes, created_at, updated_at)
SELECT 'wmbench' || c, '客户' || c, '', 1, c %% 3, '', '', now(), now() FROM generate_series(1, %(customers)s) c;
INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way, oper_userid, state, added_at, status)
SELECT c.id, (c.id %% %(staff)s) + 1, '备注' || c.id, '', 1, '', 'poster-' || (c.id %% 20),
       now() - ((c.id %% 365) || ' days')::interval,
       CASE WHEN c.id %% 17 = 0 THEN 'deleted_by_customer' ELSE 'active' END
FROM customers c;
UPDATE follow_relations SET lost_at = added_at + interval '3 days' WHERE status = 'deleted_by_customer';
INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)
SELECT f.id, f.customer_id, 'etbench' || (f.id %% 10 + 1), '客户等级', '等级' || (f.id %% 10 + 1), 1
FROM follow_relations f WHERE f.id %% 3 = 0;
ANALYZE;
"""


def plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def reset(url: str) -> None:
    u = make_url(url)
    with psycopg.connect(plain(url.replace(u.database or "", "postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (u.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{u.database}"')
    with psycopg.connect(plain(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def seeded_app(database_url: str, redis_url: str, seed: str, params: dict[str, int], what: str) -> Any:
    """A fresh scratch database, migrated, filled with the directory and then ``seed`` (statements run on
    the server), and the app over it (sandbox mode, the given Redis flushed)."""
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SIYU_LOG_LEVEL="WARNING")
    for name in ("WECOM_CORP_ID", "WECOM_API_BASE"):
        os.environ.pop(name, None)
    reset(database_url)
    from flask_migrate import upgrade

    from bot import create_app
    from bot.extensions import redis_conn

    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade()
        redis_conn.client.flushdb()
    started = time.monotonic()
    print(f"seeding {what} …", flush=True)
    with psycopg.connect(plain(database_url), autocommit=True) as conn:
        # Bulk rows go in with triggers off (the facet triggers would recompute every customer once per
        # statement), then the facets are computed once, the way `flask rebuild-facets` does.
        conn.execute("SET session_replication_role = replica")
        for script in (DIRECTORY_SEED, seed):
            for statement in filter(None, (part.strip() for part in script.split(";\n"))):
                conn.execute(statement, params)
        conn.execute("SET session_replication_role = origin")
        conn.execute("SELECT siyu_rebuild_facets()")
        conn.execute("VACUUM ANALYZE customer_facets")
    print(f"seeded in {time.monotonic() - started:.0f}s", flush=True)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_customers")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    params = {"customers": args.customers, "stores": args.stores, "staff": args.staff}
    app = seeded_app(args.database_url, args.redis_url, SEED, params, f"{args.customers:,} customers")
    from bot.extensions import db
    from bot.models import Role, Store, User
    from bot.services.users.accounts import create_user

    with app.app_context():
        create_user("bench-admin", "bench-password-1", Role.admin)
        store = db.session.query(Store).filter_by(department_id=101).one()
        create_user("bench-manager", "bench-password-2", Role.store_manager, stores=[store])
        db.session.commit()
        store_id = store.id
        assert db.session.query(User).count() == 2

    def signed_in(username: str, password: str):
        client = app.test_client()
        page = client.get("/admin/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        client.post("/admin/login", data={"username": username, "password": password, "csrf_token": token})
        return client

    admin = signed_in("bench-admin", "bench-password-1")
    manager = signed_in("bench-manager", "bench-password-2")
    deep = admin.get("/admin/customers").get_data(as_text=True)
    for _ in range(200):  # walk 200 pages (10,000 customers) down the list by keyset
        match = re.search(r'href="([^"]+)" id="next-page"', deep)
        assert match
        deep_url = match.group(1).replace("&amp;", "&")
        deep = admin.get(deep_url).get_data(as_text=True)
    cases = [
        ("first page", admin, "/admin/customers"),
        ("page 201 (keyset)", admin, deep_url),
        ("by member", admin, "/admin/customers?staff=staff42"),
        ("by store", admin, f"/admin/customers?store={store_id}"),
        ("by tag", admin, "/admin/customers?tag=etbench3"),
        ("by channel + dates", admin, "/admin/customers?channel=poster-7&added_from=2026-01-01&added_to=2026-06-30"),
        ("name search", admin, "/admin/customers?q=客户99999"),
        ("store manager's list", manager, "/admin/customers"),
        ("dashboard, 30 days", admin, "/admin/"),
        ("dashboard, store manager", manager, "/admin/"),
    ]
    print(f"\n{args.customers:,} customers, {args.staff} staff, {args.stores} stores · {args.runs} runs each")
    print(f"{'request':28}{'median ms':>12}{'worst ms':>12}")
    for name, client, url in cases:
        timings = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            res = client.get(url)
            timings.append((time.perf_counter() - t0) * 1000)
            assert res.status_code == 200, (url, res.status_code)
        print(f"{name:28}{statistics.median(timings):>12.1f}{max(timings):>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
