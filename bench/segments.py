"""Segment benchmark: rules evaluated by PostgreSQL over a million customers and five million tag links.

    make bench-segments     (or: .venv/bin/python bench/segments.py [--customers 1000000])

Fills a scratch database (default siyu_bench_segments, schema dropped and recreated) on the server with
generate_series: stores, staff, 200 tags in 10 groups, customers with one follow relation each, about five
tags per customer (tag 1 on 30 % of them, the rest spread), and a timeline entry each. Then times, through
the segment service as the panel and the API call it:
- the count of a three-condition rule (target ≤ 200 ms),
- the per-condition explanation of that rule (target ≤ 1 s),
- streaming every member of a 300,000-member segment (target ≥ 500,000 ids/s),
beside a bare ``SELECT count(*)`` of the tag link table in the same run. Prints medians and worsts in ms,
and what the facet triggers add to one tag write (an INSERT into follow_tags, committed).

Counts read the customer facets (bot/models/facets.py); the seed goes in with triggers off and computes the
facets once (bench.customers.seeded_app).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.customers import plain, seeded_app  # noqa: E402 - after sys.path.insert: run as a script

SEED = """
INSERT INTO tag_groups (group_id, name, "order", deleted, synced_at)
SELECT 'etgroup' || g, '标签组' || g, g, false, now() FROM generate_series(1, 10) g;
INSERT INTO tags (tag_id, group_pk, name, "order", deleted, synced_at)
SELECT 'ettag' || t, (SELECT id FROM tag_groups WHERE group_id = 'etgroup' || ((t - 1) / 20 + 1)), '标签' || t, t,
       false, now()
FROM generate_series(1, 200) t;
INSERT INTO customers (external_userid, name, avatar, type, gender, corp_name, notes, birthday, created_at, updated_at)
SELECT 'wmseg' || c, '客户' || c, '', 1, c %% 3, '', '',
       date '1980-01-01' + (c %% 10000), now(), now()
FROM generate_series(1, %(customers)s) c;
INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way, oper_userid, state, added_at, status)
SELECT c.id, (c.id %% %(staff)s) + 1, '', '', 1, '', 'poster-' || (c.id %% 20),
       now() - ((c.id %% 365) || ' days')::interval,
       CASE WHEN c.id %% 17 = 0 THEN 'deleted_by_customer' ELSE 'active' END
FROM customers c;
INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)
SELECT f.id, f.customer_id, 'ettag1', '标签组1', '标签1', 1 FROM follow_relations f WHERE f.id %% 10 < 3;
INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)
SELECT f.id, f.customer_id, 'ettag' || (2 + ((f.id::bigint * 7919 + k * 104729) %% 199)), '', '', 1
FROM follow_relations f, generate_series(1, 5) k
WHERE (f.id + k) %% 7 <> 0;
INSERT INTO customer_events (customer_id, at, kind, staff_userid, detail)
SELECT c.id, now() - ((c.id %% 400) || ' days')::interval, 'added', '', '' FROM customers c;
VACUUM ANALYZE;
"""


def timed(func: Callable[[], object], runs: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), result


def tag_writes(database_url: str, n: int, triggers: bool) -> float:
    """The median time of tagging one customer (one INSERT into follow_tags, committed), the facet triggers
    on or off; the tags are removed again afterwards with the triggers on, so the facets stay true."""
    times = []
    with psycopg.connect(plain(database_url), autocommit=True) as conn:
        if not triggers:
            conn.execute("SET session_replication_role = replica")
        for i in range(n):
            started = time.perf_counter()
            conn.execute(
                "INSERT INTO follow_tags (follow_id, customer_id, tag_id, group_name, tag_name, type)"
                " SELECT id, customer_id, 'etbench', '', '', 1 FROM follow_relations WHERE customer_id = %s",
                (1 + i * 3001,),
            )
            times.append((time.perf_counter() - started) * 1000)
        conn.execute("SET session_replication_role = origin")
        conn.execute("DELETE FROM follow_tags WHERE tag_id = 'etbench'")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_segments")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    params = {"customers": args.customers, "stores": args.stores, "staff": args.staff}
    app = seeded_app(args.database_url, args.redis_url, SEED, params, f"{args.customers:,} customers, ~5 tags each")
    from bot.extensions import db
    from bot.models import Store
    from bot.services.segments import rules as segments

    with psycopg.connect(plain(args.database_url)) as conn:
        (links,) = conn.execute("SELECT count(*) FROM follow_tags").fetchone()  # type: ignore[misc]

    with app.app_context():
        stores = [s.id for s in db.session.query(Store).order_by(Store.id).limit(10)]
        three = segments.parse_rule(
            {
                "op": "and",
                "conditions": [
                    {"type": "tags", "match": "any", "tag_ids": ["ettag1", "ettag2", "ettag3"]},
                    {"type": "store", "store_ids": stores},
                    {"type": "tags", "match": "none", "tag_ids": ["ettag50"]},
                ],
            }
        )
        big = segments.parse_rule({"conditions": [{"type": "tags", "match": "any", "tag_ids": ["ettag1"]}]})
        bare_ms, bare_worst, _ = timed(
            lambda: db.session.execute(db.text("SELECT count(*) FROM follow_tags")).scalar(), args.runs
        )
        count_ms, count_worst, n = timed(lambda: segments.count(three, None), args.runs)
        explain_ms, explain_worst, steps = timed(lambda: segments.explain(three, None), args.runs)

        def stream_all() -> int:
            return sum(1 for _ in segments.stream(segments.member_rows(big, None)))

        stream_ms, stream_worst, members = timed(stream_all, max(1, args.runs // 2))
    with_facets, without = tag_writes(args.database_url, 300, True), tag_writes(args.database_url, 300, False)
    print()
    print(f"customers {args.customers:,} · tags 200 · links {links:,} · PostgreSQL · {os.cpu_count()} cores")
    print(f"{'':44}{'median ms':>12}{'worst ms':>12}")
    print(f"{'bare count(*) of the tag link table':44}{bare_ms:>12.0f}{bare_worst:>12.0f}")
    print(f"{'count of a three-condition rule':44}{count_ms:>12.0f}{count_worst:>12.0f}   → {n:,} customers")
    print(f"{'explain (each condition alone + combined)':44}{explain_ms:>12.0f}{explain_worst:>12.0f}")
    rate = members / (stream_ms / 1000) if stream_ms else 0.0  # type: ignore[operator]
    print(f"{'stream every member of the big segment':44}{stream_ms:>12.0f}{stream_worst:>12.0f}   → {members:,} ids")
    print(f"streaming rate: {rate:,.0f} ids/s")
    print("per condition:", [(s["alone"], s["combined"]) for s in steps["steps"]])  # type: ignore[index]
    print(
        f"one tag written and committed: {with_facets:.2f} ms with the facet triggers, {without:.2f} ms without"
        f" (median of 300)"
    )
    ok = count_ms <= 200 and explain_ms <= 1000 and rate >= 500_000
    print("RESULT:", "ok" if ok else "PROBLEM (targets: count ≤ 200 ms, explain ≤ 1 s, stream ≥ 500,000 ids/s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
