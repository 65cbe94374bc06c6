"""Brand-data benchmark: orders imported through the API's batches, the nightly RFM recompute, a segment count
on RFM and spend, and the rankings page with sales — a million customers on PostgreSQL.

    make bench-brand     (or: .venv/bin/python bench/brand_data.py [--customers 1000000] [--orders 1000000])

Fills a scratch database (default siyu_bench_brand, schema dropped and recreated) with the directory, a
million customers (one follow relation each, a channel on one in five) and a year of history: one order per
customer written on the server. Then, through the app:
- posts ``--orders`` new orders to ``POST /api/v1/orders`` in batches of 1,000 (as an API token's user:
  validation, matching by external_userid, attribution, the incremental RFM refresh of the customers each
  batch touched, the audit entry, one commit per batch), one in twenty a mobile recorded on nobody (kept
  waiting), one in fifty a refund of an earlier order — from ``--streams`` processes side by side (as a
  brand's system posting to the several web processes of a deployment; each its own app, as a web worker
  is), their batches made before the clock starts; prints rows/s, the CPU per batch of the app and of
  PostgreSQL, and the largest process's peak memory (target: a million in ≤ 60 s on two cores);
- runs the nightly full recompute (quintiles, every customer scored; target ≤ 30 s);
- counts a three-condition segment (an RFM class, a spend range, a store; target ≤ 200 ms) and its
  per-condition explanation;
- renders the rankings page with its sales tables, 30 days (target ≤ 300 ms);
- and imports a 100,000-line GBK CSV of orders as the panel's upload does (checked, then its job's batches).

Where the server runs without autovacuum (this project's CI machine does), the database is vacuumed and
analyzed before the import, after it and after the recompute, as autovacuum would after so many writes;
each is printed with its time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.customers import plain, seeded_app  # noqa: E402 - after sys.path.insert: run as a script

SEED = """
INSERT INTO channels (name, group_name, config_id, state, qr_code, skip_verify, tag_ids, remark_template,
                      routed_userids, active, created_at)
SELECT '渠道' || n, '', 'cfg' || n, 'poster-' || n, '', true, '[]', '', '[]', true, now() FROM generate_series(1, 20) n;
INSERT INTO customers (external_userid, name, avatar, type, gender, corp_name, notes, created_at, updated_at)
SELECT 'wmbrand' || c, '客户' || c, '', 1, c %% 3, '', '', now(), now() FROM generate_series(1, %(customers)s) c;
INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way, oper_userid, state, channel_id,
                              added_at, status)
SELECT c.id, (c.id %% %(staff)s) + 1, '', '', 1, '', '', CASE WHEN c.id %% 5 = 0 THEN c.id %% 20 + 1 END,
       now() - ((c.id %% 700) || ' days')::interval, 'active'
FROM customers c;
INSERT INTO orders (order_no, customer_id, member_no, external_userid, unionid, mobile, store_id, amount_cents,
                    paid_at, status, attributed_staff_id, channel_id, matched_at, created_at, updated_at)
SELECT 'H' || c.id, c.id, '', c.external_userid, '', '', (c.id %% %(stores)s) + 1,
       1000 + (c.id::bigint * 7919) %% 200000,
       now() - (((c.id::bigint * 104729) %% 730) || ' days')::interval, 'paid', (c.id %% %(staff)s) + 1,
       CASE WHEN c.id %% 5 = 0 THEN c.id %% 20 + 1 END, now(), now(), now()
FROM customers c;
ANALYZE;
"""


def timed(func, runs: int) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), result


def batches(customers: int, orders: int, size: int = 1000):  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    for start in range(0, orders, size):
        rows = []
        for i in range(start, min(start + size, orders)):
            c = (i * 7919) % customers + 1
            if i % 50 == 49:  # a refund of a history order
                rows.append(
                    {
                        "order_no": f"H{c}",
                        "external_userid": f"wmbrand{c}",
                        "store": 100 + c % 50 + 1,
                        "amount": f"{(1000 + (c * 7919) % 200000) / 100:.2f}",
                        "status": "refunded",
                        "paid_at": (now - timedelta(days=(c * 104729) % 730)).isoformat(),
                    }
                )
                continue
            row = {
                "order_no": f"N{i}",
                "store": 100 + i % 50 + 1,
                "amount": f"{(i % 5000) + 9.9:.2f}",
                "paid_at": (now - timedelta(minutes=i % 500_000)).isoformat(),
                "items": [{"sku": f"S{i % 300}", "qty": 1}],
            }
            if i % 20 == 0:
                row["mobile"] = f"139{i % 100_000_000:08d}"  # recorded on nobody: waits
            else:
                row["external_userid"] = f"wmbrand{c}"
            rows.append(row)
        yield rows


def _backend_cpu(pid: int) -> float:
    """CPU seconds a PostgreSQL backend on this machine has used (``/proc``: user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stream(k: int, streams: int, customers: int, orders: int, token: str, ready, go) -> dict:  # type: ignore[no-untyped-def]
    """One stream of the import: every ``streams``-th batch from the ``k``-th, posted one after another by
    its own app (a process of its own). Its batches are made, then it waits for the others to start."""
    from sqlalchemy import text

    from bot import create_app
    from bot.extensions import db

    app = create_app({"TESTING": True})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    bodies = [
        json.dumps({"rows": rows}, ensure_ascii=False).encode()
        for n, rows in enumerate(batches(customers, orders))
        if n % streams == k
    ]
    with app.app_context():  # one connection serves the stream's requests: its backend's CPU is counted
        backend = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        db.session.rollback()
    totals = {"created": 0, "updated": 0, "unchanged": 0, "matched": 0, "waiting": 0, "refused": 0}
    ready.wait()
    go.wait()
    cpu, pg_cpu = time.process_time(), _backend_cpu(backend)
    for body in bodies:
        answer = client.post("/api/v1/orders", data=body, content_type="application/json", headers=headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        for key in totals:
            totals[key] += answer.get_json()[key]
    return {
        "totals": totals,
        "batches": len(bodies),
        "cpu": time.process_time() - cpu,
        "pg_cpu": _backend_cpu(backend) - pg_cpu,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _as_autovacuum(url: str, after: str) -> None:
    """Where this PostgreSQL runs without autovacuum (a CI server's setting), vacuum and analyze as it would
    after a million writes: without, a table holds every dead row of the imports and upserts, index-only
    scans read the heap, and the figures after would be those of a server nobody runs in production."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        if conn.execute("SHOW autovacuum").fetchone() != ("off",):
            return
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
    took = time.perf_counter() - started
    print(f"autovacuum is off on this PostgreSQL: vacuumed and analyzed as it would, {after} ({took:.1f}s)")


def _csv_import(app, customers: int, lines: int) -> float:  # type: ignore[no-untyped-def]
    """A GBK CSV of ``lines`` orders (Chinese headings), checked as the panel's upload is and imported by the
    job's function; returns the seconds from upload to done."""
    from bot.extensions import db
    from bot.models import User
    from bot.services.commerce import uploads

    paid = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = "订单号,门店,金额,支付时间,external_userid\n" + "".join(
        f"C{i},{100 + i % 50 + 1},{i % 900 + 0.5},{paid},wmbrand{(i * 31) % customers + 1}\n" for i in range(lines)
    )
    content = text.encode("gbk")
    with app.app_context():
        started = time.perf_counter()
        user = db.session.query(User).filter_by(username="bench-admin").one()
        job = uploads.start_import("orders", "bench.csv", content, user)
        db.session.commit()
        done = uploads.run_import(job.id, lambda _job: None, db.session.commit)
        assert done.status == "done" and done.counts["created"] == lines, done.counts
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_brand")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--streams", type=int, default=2, help="processes posting the batches side by side")
    parser.add_argument("--csv-rows", type=int, default=100_000, help="lines of the GBK CSV uploaded (0: none)")
    args = parser.parse_args()

    params = {"customers": args.customers, "stores": args.stores, "staff": args.staff}
    app = seeded_app(args.database_url, args.redis_url, SEED, params, f"{args.customers:,} customers, one order each")
    from bot.extensions import db
    from bot.models import Role, Store, User
    from bot.services.commerce import values
    from bot.services.segments import rules as segments
    from bot.services.users.accounts import create_user
    from bot.services.users.api_tokens import create_api_token

    with app.app_context():
        started = time.perf_counter()
        first = values.recompute_all()  # the history's values, before the imports
        db.session.commit()
        print(f"first full recompute (history only): {time.perf_counter() - started:.1f}s, {first['scored']:,} scored")
    _as_autovacuum(args.database_url, "before the import (the brand's history)")
    with app.app_context():
        admin = create_user("bench-admin", "bench-password-1", Role.admin)
        token = create_api_token("bench", db.session.get(User, admin.id))
        db.session.commit()
        stores = [s.id for s in db.session.query(Store).order_by(Store.id).limit(10)]

    context = multiprocessing.get_context("spawn")  # each stream a fresh interpreter, as a web worker is
    with context.Manager() as manager, context.Pool(args.streams) as pool:
        ready, go = manager.Barrier(args.streams + 1), manager.Event()
        waiting = pool.starmap_async(
            _stream,
            [(k, args.streams, args.customers, args.orders, token, ready, go) for k in range(args.streams)],
        )
        ready.wait()  # every stream's batches made: the clock starts
        started = time.perf_counter()
        go.set()
        results = waiting.get()
    elapsed = time.perf_counter() - started
    totals = {k: sum(r["totals"][k] for r in results) for k in results[0]["totals"]}
    peak_mb = max(r["peak_mb"] for r in results)
    app_cpu = sum(r["cpu"] for r in results) / max(1, sum(r["batches"] for r in results)) * 1000
    pg_cpu = sum(r["pg_cpu"] for r in results) / max(1, sum(r["batches"] for r in results)) * 1000
    client = app.test_client()
    _as_autovacuum(args.database_url, "after the import")

    csv_s = _csv_import(app, args.customers, args.csv_rows) if args.csv_rows else 0.0

    with app.app_context():
        started = time.perf_counter()
        nightly = values.recompute_all()
        db.session.commit()
        recompute_s = time.perf_counter() - started
    _as_autovacuum(args.database_url, "after the recompute")
    with app.app_context():
        rule = segments.parse_rule(
            {
                "op": "and",
                "conditions": [
                    {"type": "rfm_class", "classes": ["important_value", "important_keep"]},
                    {"type": "spend", "min": 500},
                    {"type": "store", "store_ids": stores},
                ],
            }
        )
        stores_only = segments.parse_rule({"conditions": [{"type": "store", "store_ids": stores}]})
        base_ms, base_worst, _ = timed(lambda: segments.count(stores_only, None), args.runs)
        count_ms, count_worst, n = timed(lambda: segments.count(rule, None), args.runs)
        explain_ms, explain_worst, _ = timed(lambda: segments.explain(rule, None), args.runs)

    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post("/admin/login", data={"username": "bench-admin", "password": "bench-password-1", "csrf_token": csrf})
    rank_ms, rank_worst, res = timed(lambda: client.get("/admin/rankings"), args.runs)
    assert res.status_code == 200 and "member-sales" in res.get_data(as_text=True)  # type: ignore[attr-defined]

    with psycopg.connect(plain(args.database_url)) as conn:
        (orders,) = conn.execute("SELECT count(*) FROM orders").fetchone()  # type: ignore[misc]
    print()
    print(f"customers {args.customers:,} · orders in the end {orders:,} · PostgreSQL · {os.cpu_count()} cores")
    print(
        f"import {args.orders:,} orders via POST /api/v1/orders (1,000 a batch, {args.streams} streams):"
        f" {elapsed:.1f}s → {args.orders / elapsed:,.0f} rows/s, peak memory {peak_mb:,.0f} MB a process"
        f"   {totals}"
    )
    print(f"  CPU per batch: the app {app_cpu:.0f} ms, PostgreSQL {pg_cpu:.0f} ms")
    if args.csv_rows:
        print(f"panel CSV upload, {args.csv_rows:,} GBK lines, checked and imported by its job: {csv_s:.1f}s")
    print(
        f"nightly RFM recompute: {recompute_s:.1f}s for {nightly['customers']:,} customers"
        f" ({nightly['scored']:,} scored)"
    )
    print(f"{'':44}{'median ms':>12}{'worst ms':>12}")
    print(f"{'(the store condition alone, facets only)':44}{base_ms:>12.0f}{base_worst:>12.0f}")
    print(f"{'segment count: RFM class + spend + store':44}{count_ms:>12.0f}{count_worst:>12.0f}   → {n:,} customers")
    print(f"{'its explanation (per condition)':44}{explain_ms:>12.0f}{explain_worst:>12.0f}")
    print(f"{'rankings page with sales (30 days)':44}{rank_ms:>12.0f}{rank_worst:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
