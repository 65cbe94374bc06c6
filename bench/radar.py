"""Radar link benchmark: the public redirect (/r/<token>) under gunicorn on PostgreSQL + Redis, beside a bare
Flask redirect in the same run, then the recording of every open by the worker, checked exactly once.

    make bench-radar      (or: .venv/bin/python bench/radar.py --help)

1. Seeds a fake corp with --customers customers of 20 members, mirrors them in the database, makes one tracked
   link item (giving its openers a tag) and one customer link per customer.
2. Serves bench/bare.py's redirect and then wsgi:app with the same gunicorn settings (gevent, as deployed) and
   drives each with wrk at full speed: opens/s, p50/p99, the ratio. Then drives Siyu again paced at half of its
   own rate (each connection waits between requests) and prints p99 there.
3. Drains the opens with --queue-workers worker processes started at once (against the fake WeCom) and checks
   that each (link, customer, day) is one open, one timeline entry, one alert and one mark_tag, however many
   requests hit it and however many workers raced to record them, and that every 302 was noted (reloads).

Needs wrk (apt-get install wrk), PostgreSQL and Redis. It drops and recreates the schema of the database it is
given: point it at a scratch database (the Makefile uses siyu_bench_radar).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.callbacks import (  # noqa: E402 - after sys.path.insert: run as a script
    BIN,
    bench_env,
    free_port,
    gunicorn,
    query_one,
    reset_database,
    stop,
    wait_for_port,
)
from bot.config import Settings  # noqa: E402 - after sys.path.insert: run as a script
from bot.sandbox import corp_for, create_fake_wecom, serve_in_thread, simulator_for  # noqa: E402 - run as a script

STAFF = 20


def run_wrk(port: int, paths: Path, threads: int, connections: int, duration: int, delay_ms: int = 0) -> dict:
    env = {
        **os.environ,
        "SIYU_BENCH_REQUESTS": str(paths),
        "SIYU_BENCH_THREADS": str(threads),
        "SIYU_BENCH_DELAY_MS": str(delay_ms),
    }
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s"]
    cmd += ["-s", str(ROOT / "bench" / "wrk_radar.lua"), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    lat = re.search(r"^LATENCY p50=(\d+) p90=(\d+) p99=(\d+) max=(\d+)$", out, re.M)
    summ = re.search(r"^SUMMARY (.*)$", out, re.M)
    if not lat or not summ:
        raise SystemExit("could not read wrk's output:\n" + out)
    result: dict = dict(zip(("p50_us", "p90_us", "p99_us", "max_us"), map(int, lat.groups()), strict=True))
    result.update({k: int(v) for k, v in (kv.split("=") for kv in summ.group(1).split())})
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("non2xx", "timeout", "connect", "read", "write"))
    return result


def seed(env: dict[str, str], customers: int, sandbox_port: int) -> tuple[list[str], object]:
    """The fake corp and its mirror: members, tags, customers, a tracked item; the customers' link paths."""
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SIYU_SANDBOX_PORT")})
    from bot import create_app
    from bot.extensions import db
    from bot.models import Customer, FollowRelation, Role, Staff, Tag
    from bot.services.directory.sync import sync_directory
    from bot.services.library import items
    from bot.services.radar import tokens
    from bot.services.tags.library import sync_corp_tags
    from bot.services.users.accounts import create_user

    settings = Settings.from_env(env)
    corp = corp_for(settings)
    sim = simulator_for(settings, corp, "http://unused/", seed=7)
    sim.seed_corp(stores=4, staff_per_store=STAFF // 4)
    serve_in_thread(create_fake_wecom(corp), port=sandbox_port)
    app = create_app()
    paths = []
    with app.app_context():
        sync_directory()
        sync_corp_tags()
        staff = {s.userid: s for s in db.session.scalars(db.select(Staff))}
        userids = sorted(staff)
        rows = []
        for n in range(customers):
            userid = userids[n % len(userids)]
            contact, _ = corp.add_contact(sim.person_name(), 1, userid, state="")
            rows.append((contact.external_userid, contact.name, userid))
        db.session.execute(db.insert(Customer), [{"external_userid": e, "name": name} for e, name, _ in rows])
        ids = dict(db.session.execute(db.select(Customer.external_userid, Customer.id)).all())
        db.session.execute(
            db.insert(FollowRelation),
            [{"customer_id": ids[e], "staff_id": staff[u].id, "status": "active"} for e, _, u in rows],
        )
        admin = create_user("bench-admin", "bench-admin-password-0", Role.admin)
        tag = db.session.scalar(db.select(Tag.tag_id).where(Tag.deleted.is_(False)).limit(1))
        item = items.save_item(
            {"kind": "link", "title": "压测新品", "url": "https://shop.example.com/autumn", "tracked": True}
            | {"open_tag_ids": [tag]},
            admin,
        )
        db.session.commit()
        for e, _name, u in rows:
            paths.append("/r/" + tokens.for_customer(item.id, staff[u].id, e))
    return paths, corp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_radar")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--customers", type=int, default=5000, help="customers, one link each")
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--queue-workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2

    sandbox_port = free_port()
    # No quiet hours: every first open tells its member, so that the alerts can be counted.
    env = bench_env(args.database_url, args.redis_url, sandbox_port) | {"SIYU_QUIET_HOURS": "0-0"}
    print(f"seeding {args.customers} customers and their links …", flush=True)
    reset_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    paths, corp = seed(env, args.customers, sandbox_port)
    tmp = Path(tempfile.mkdtemp(prefix="siyu-bench-radar-"))
    requests_file = tmp / "paths.txt"
    requests_file.write_text("\n".join(paths) + "\n", encoding="utf-8")

    results: dict[str, dict] = {}
    for name, app in (("bare Flask redirect", "bench.bare:app"), ("Siyu /r/<token>", "wsgi:app")):
        port = free_port()
        proc = gunicorn(app, port, env, args.web_workers, "gevent", 1)
        try:
            wait_for_port(port)
            time.sleep(1.0)
            print(f"driving the {name} for {args.duration}s …", flush=True)
            results[name] = run_wrk(port, requests_file, args.wrk_threads, args.connections, args.duration)
            if app == "wsgi:app":
                half = results[name]["rps"] / 2
                # each connection waits so that all of them together ask about half the saturated rate
                delay = max(1, int(args.connections * 1000 / half))
                print(f"driving Siyu paced at ~{half:.0f} opens/s for {args.duration}s …", flush=True)
                results["Siyu at half rate"] = run_wrk(
                    port, requests_file, args.wrk_threads, args.connections, args.duration, delay
                )
        finally:
            stop(proc)
    siyu, bare, paced = results["Siyu /r/<token>"], results["bare Flask redirect"], results["Siyu at half rate"]
    noted = redis.Redis.from_url(args.redis_url).llen("siyu:radar:opens")
    served = siyu["requests"] + paced["requests"]

    print(f"recording with {args.queue_workers} worker processes started together …", flush=True)
    started = time.monotonic()
    workers = [
        subprocess.Popen([str(BIN / "flask"), "worker", "--burst"], cwd=ROOT, env=env)
        for _ in range(args.queue_workers)
    ]
    for w in workers:
        w.wait()
    recorded_s = time.monotonic() - started
    db = args.database_url
    opens, reloads, visitors = query_one(
        db, "SELECT count(*), coalesce(sum(count), 0), count(DISTINCT visitor) FROM radar_opens"
    )
    (events,) = query_one(db, "SELECT count(*) FROM customer_events WHERE kind = 'link_opened'")
    (alerts,) = query_one(db, "SELECT count(*) FROM radar_alerts")
    (sent,) = query_one(db, "SELECT count(*) FROM radar_alerts WHERE status = 'sent'")
    (left,) = (redis.Redis.from_url(args.redis_url).llen("siyu:radar:opens"),)
    marks = corp.calls.count("externalcontact/mark_tag")
    messages = sum(1 for m in corp.app_messages if "打开了" in m.get("textcard", {}).get("title", ""))

    ratio = siyu["rps"] / bare["rps"] if bare["rps"] else 0.0
    print()
    print(
        f"machine: {os.cpu_count()} cores, shared with other work while measured · gunicorn {args.web_workers} "
        f"workers (gevent) · wrk {args.wrk_threads} threads, {args.connections} connections, {args.duration}s"
    )
    print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:24}{r['rps']:>10.0f}{r['p50_us'] / 1000:>10.2f}{r['p99_us'] / 1000:>10.2f}{r['errors']:>8}")
    print(f"Siyu / bare: {ratio:.0%} (target ≥ 30 %); opens/s {siyu['rps']:.0f} (target ≥ 1,000)")
    print(f"p99 at half rate: {paced['p99_us'] / 1000:.1f} ms (target ≤ 20 ms)")
    print(f"redirects served {served}; noted before recording {noted}; left after {left}")
    print(
        f"recorded in {recorded_s:.1f}s: opens {opens} (distinct links opened: {visitors} of {len(paths)}), "
        f"arrivals {reloads}, timeline entries {events}, alerts {alerts} (sent {sent}), app messages {messages}, "
        f"mark_tag calls {marks}"
    )
    once = opens == visitors == events == alerts == sent == messages == marks
    ok = siyu["errors"] == 0 and paced["errors"] == 0 and once and left == 0 and reloads == noted
    print("exactly once per (link, customer, day):", "yes" if once else "NO")
    print("RESULT:", "ok" if ok else "PROBLEM")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
