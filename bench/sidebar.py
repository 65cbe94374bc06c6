"""Sidebar benchmark: the member's customer view and the page signature, on PostgreSQL with a million customers.

    make bench-sidebar     (or: .venv/bin/python bench/sidebar.py [--customers 1000000])

Fills a scratch database (default siyu_bench_sidebar, schema dropped and recreated) with the customer-list
benchmark's corp (stores, staff, a million customers with one follow relation each, a tag on every third),
plus three timeline events per customer, ten saved segments on tags and attributes, and an open lifecycle
task for the sampled customers. Then, through the app and the fake WeCom on loopback (sandbox mode):

- the customer view (GET /sidebar/customers/<id>, everything the sidebar shows, rendered) as the member who
  follows each of --samples customers: the server time's median, p99 and worst (target p99 ≤ 100 ms);
- GET /sidebar/jsapi-config, both signatures, --requests times with the tickets cached: p50, p99 (target
  ≤ 5 ms) and how many tickets were fetched from WeCom after the first of each kind (target 0).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.customers import SEED, seeded_app  # noqa: E402 - after sys.path.insert: run as a script

EXTRA = """
INSERT INTO customer_events (customer_id, at, kind, staff_userid, detail)
SELECT c.id, now() - ((c.id %% 300) || ' days')::interval - (k || ' hours')::interval,
       (ARRAY['added', 'tag_added', 'profile_edited'])[k],
       CASE WHEN k = 2 THEN '' ELSE 'staff' || ((c.id %% %(staff)s) + 1) END, ''
FROM customers c, generate_series(1, 3) k;
INSERT INTO segments (name, rule, created_at, updated_at)
SELECT '分群' || s,
       CASE WHEN s %% 2 = 0
            THEN ('{"op": "and", "conditions": [{"type": "tags", "match": "any", '
                  || '"tag_ids": ["etbench' || s || '"]}]}')::json
            ELSE ('{"op": "and", "conditions": [{"type": "inactive_days", "days": ' || (s * 10) || '}]}')::json END,
       now(), now()
FROM generate_series(1, 10) s;
ANALYZE;
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_sidebar")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=500)
    parser.add_argument("--samples", type=int, default=300, help="customers whose view is timed")
    parser.add_argument("--requests", type=int, default=2000, help="jsapi-config requests")
    args = parser.parse_args()

    params = {"customers": args.customers, "stores": args.stores, "staff": args.staff}
    app = seeded_app(args.database_url, args.redis_url, SEED + ";\n" + EXTRA, params, f"{args.customers:,} customers")

    from flask import Response
    from sqlalchemy import select

    from admin.sidebar.session import COOKIE, sign_in
    from bot.extensions import db
    from bot.metrics import TICKET_FETCHES
    from bot.models import Customer, FollowRelation, LifecycleRule, LifecycleTask, Staff
    from bot.sandbox import corp_for, create_fake_wecom, serve_in_thread

    settings = app.config["SIYU"]
    serve_in_thread(create_fake_wecom(corp_for(settings)), port=settings.sandbox_port)
    rng = random.Random(21)
    picks = sorted(rng.sample(range(1, args.customers + 1), args.samples))
    with app.app_context():
        rule = LifecycleRule(
            name="沉睡唤醒",
            trigger="dormant",
            trigger_args={"days": 30},
            enabled=True,
            actions=[{"type": "remind", "text": "问候一下"}],
        )
        db.session.add(rule)
        db.session.flush()
        rows = db.session.execute(
            select(Customer.id, Customer.external_userid, FollowRelation.staff_id)
            .join(FollowRelation, FollowRelation.customer_id == Customer.id)
            .where(Customer.id.in_(picks), FollowRelation.status == "active")
        ).all()
        for customer_id, _external, staff_id in rows:
            db.session.add(
                LifecycleTask(
                    rule_id=rule.id, customer_id=customer_id, occurrence="bench", staff_id=staff_id, remind="done"
                )
            )
        db.session.commit()
        cookies = {}
        for staff_id in {s for _c, _e, s in rows}:
            response = Response()
            sign_in(response, db.session.get(Staff, staff_id))
            cookies[staff_id] = response.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]

    client = app.test_client()

    def as_member(staff_id: int) -> None:
        client.set_cookie(COOKIE, cookies[staff_id], domain="localhost", path="/sidebar/")

    as_member(rows[0][2])
    assert client.get(f"/sidebar/customers/{rows[0][1]}").status_code == 200  # warm: templates, tag library
    views = []
    for _customer_id, external_userid, staff_id in rows:
        as_member(staff_id)
        t0 = time.perf_counter()
        res = client.get(f"/sidebar/customers/{external_userid}")
        views.append((time.perf_counter() - t0) * 1000)
        assert res.status_code == 200, (external_userid, res.status_code)

    page = settings.public_url + "sidebar/customers/wmbench1?from=bench"
    first = client.get("/sidebar/jsapi-config", query_string={"url": page})
    assert first.status_code == 200, first.get_data(as_text=True)

    def fetched() -> float:
        return sum(s.value for m in TICKET_FETCHES.collect() for s in m.samples if s.name.endswith("_total"))

    after_first = fetched()
    configs = []
    for _ in range(args.requests):
        t0 = time.perf_counter()
        res = client.get("/sidebar/jsapi-config", query_string={"url": page})
        configs.append((time.perf_counter() - t0) * 1000)
        assert res.status_code == 200
    extra_fetches = fetched() - after_first

    print(
        f"\n{args.customers:,} customers, {args.staff} staff · {len(views)} customer views, {args.requests} signatures"
    )
    print(f"{'request':34}{'p50 ms':>10}{'p99 ms':>10}{'worst ms':>10}")
    for name, timings in (("customer view (rendered)", views), ("jsapi-config (tickets cached)", configs)):
        print(f"{name:34}{statistics.median(timings):>10.1f}{percentile(timings, 99):>10.1f}{max(timings):>10.1f}")
    print(f"ticket fetches: {after_first:.0f} for the first signature, {extra_fetches:.0f} after it")
    ok = percentile(views, 99) <= 100 and percentile(configs, 99) <= 5 and extra_fetches == 0
    print(f"RESULT: {'ok' if ok else 'PROBLEM'} (targets: view p99 ≤ 100 ms, jsapi-config p99 ≤ 5 ms, 0 fetches)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
