"""Lifecycle benchmark: the daily evaluation of the four built-in rules over a million customers.

    make bench-lifecycle     (or: .venv/bin/python bench/lifecycle.py [--customers 1000000])

Fills a scratch database (default siyu_bench_lifecycle) on the server with generate_series: stores, staff,
customers with a birthday spread over the year, a last interaction spread over 400 days, one follow
relation each (added over the last 365 days), and 1,000 customers who deleted their member yesterday.
Then switches on the four built-in templates (生日关怀, 新客跟进, 沉睡唤醒, 流失挽回) and times, through
the lifecycle service as the scheduler calls it:
- the first evaluation (the day the rules are switched on: every dormant customer is a new task),
- a repeated run the same day (nothing new: every candidate already has its task),
- the next day's evaluation (steady state: the day's new birthdays, follow-up steps, new dormancies),
each as matching (the INSERT … SELECT of tasks) plus writing the one-to-one sends (DB only; app messages
and WeCom calls are not part of the evaluation and are not made here). Target: a daily evaluation ≤ 10 s.
Prints the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.customers import plain, seeded_app  # noqa: E402 - after sys.path.insert: run as a script

SEED = """
INSERT INTO customers (external_userid, name, avatar, type, gender, corp_name, notes, birthday, last_interaction_at,
                       created_at, updated_at)
SELECT 'wmlc' || c, '客户' || c, '', 1, c %% 3, '', '',
       date '1970-01-01' + ((c::bigint * 7919) %% 18250)::int,
       now() - (((c::bigint * 104729) %% 400) || ' days')::interval - ((c %% 86400) || ' seconds')::interval,
       now() - interval '400 days', now()
FROM generate_series(1, %(customers)s) c;
INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way, oper_userid, state, added_at, status)
SELECT c.id, (c.id %% %(staff)s) + 1, '', '', 1, '', '',
       now() - (((c.id::bigint * 31) %% 365) || ' days')::interval,
       CASE WHEN c.id <= 1000 THEN 'deleted_by_customer' ELSE 'active' END
FROM customers c;
INSERT INTO customer_events (customer_id, at, kind, staff_userid, detail)
SELECT f.customer_id, now() - interval '20 hours', 'deleted_by_customer', s.userid, ''
FROM follow_relations f JOIN staff s ON s.id = f.staff_id WHERE f.status = 'deleted_by_customer';
VACUUM ANALYZE;
"""


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate(rules: list, now: datetime) -> tuple[float, dict[str, tuple[int, float, float]]]:
    """One evaluation as run_rules does it, minus the app messages: match each rule, then its send."""
    from bot.extensions import db
    from bot.models import RuleRun
    from bot.services.lifecycle import actions, runner

    per_rule: dict[str, tuple[int, float, float]] = {}
    started = time.perf_counter()
    for rule in rules:
        t0 = time.perf_counter()
        run = RuleRun(rule_id=rule.id, started_at=now)
        db.session.add(run)
        db.session.flush()
        matched = runner.match_in_batches(rule, run, now)  # as run_rules does: a batch per transaction
        run.status, run.matched = "ok", matched
        db.session.commit()
        t1 = time.perf_counter()
        actions.start_send(rule, now)
        db.session.commit()
        per_rule[rule.name] = (matched, time.perf_counter() - t0, t1 - t0)
    return time.perf_counter() - started, per_rule


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_lifecycle")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=1000)
    args = parser.parse_args()

    params = {"customers": args.customers, "stores": args.stores, "staff": args.staff}
    app = seeded_app(args.database_url, args.redis_url, SEED, params, f"{args.customers:,} customers")
    from bot.extensions import db
    from bot.models import LifecycleRule, Role, User
    from bot.models._time import utcnow
    from bot.services.lifecycle import rules as lifecycle
    from bot.services.lifecycle.runner import MATCH_BATCH
    from bot.services.users.accounts import create_user

    rss_before = peak_mb()
    with app.app_context():
        admin = create_user("bench-admin", "bench-password-0123456789", Role.admin)
        db.session.commit()
        for key in lifecycle.TEMPLATES:
            rule = lifecycle.save_rule({"template": key, "window_start": "00:00", "window_end": "24:00"}, admin)
            lifecycle.set_enabled(rule, admin, True)
        db.session.commit()
        user = db.session.get(User, admin.id)
        assert user is not None
        rules = list(db.session.query(LifecycleRule).order_by(LifecycleRule.id))
        # Switched on a day ago, so that yesterday's losses are in the event triggers' reach.
        for rule in rules:
            rule.enabled_at = utcnow() - timedelta(days=1)
        db.session.commit()
        now = utcnow()
        first, first_rules = evaluate(rules, now)
        again, again_rules = evaluate(rules, now + timedelta(minutes=10))
        tomorrow, tomorrow_rules = evaluate(rules, now + timedelta(days=1))
        with psycopg.connect(plain(args.database_url)) as conn:
            (tasks,) = conn.execute("SELECT count(*) FROM lifecycle_tasks").fetchone()  # type: ignore[misc]
            (in_sends,) = conn.execute("SELECT count(*) FROM lifecycle_tasks WHERE send_id IS NOT NULL").fetchone()  # type: ignore[misc]

    print()
    print(f"customers {args.customers:,} · staff {args.staff:,} · PostgreSQL · {os.cpu_count()} cores")
    print(f"{'':34}{'first day':>16}{'same day again':>18}{'next day':>16}")
    for name in first_rules:
        cells = [f"{r[name][0]:>9,} {r[name][1]:>5.1f}s" for r in (first_rules, again_rules, tomorrow_rules)]
        print(f"{name:32}{cells[0]:>18}{cells[1]:>18}{cells[2]:>16}")
    print(f"{'total (match + write the sends)':32}{first:>17.1f}s{again:>17.1f}s{tomorrow:>15.1f}s")
    print(f"tasks written: {tasks:,} (in one-to-one sends: {in_sends:,})")
    longest = max(r[name][2] for r in (first_rules,) for name in r)
    print(f"longest matching of one rule (in transactions of {MATCH_BATCH:,} customer ids each): {longest:.1f}s")
    print("WeCom is not called by the evaluation: the same at any WeCom latency (--wecom-latency does not apply)")
    print(f"peak RSS: {peak_mb():.0f} MB (before the evaluations: {rss_before:.0f} MB)")
    ok = tomorrow <= 10 and again <= 10 and first <= 15
    targets = "targets: a daily evaluation ≤ 10 s, the first day ≤ 15 s"
    print("RESULT:", "ok" if ok else f"PROBLEM ({targets})", f"(first day {first:.1f}s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
