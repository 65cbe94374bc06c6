"""Radar link benchmark: the public redirect (/r/<token>) under gunicorn on PostgreSQL + Redis, beside a bare
Flask redirect in the same run, then the recording of every open by the worker, checked exactly once.

    make bench-radar      (or: .venv/bin/python bench/radar.py --help)

1. Seeds a fake corp with --customers customers of 20 members, mirrors them in the database, makes one tracked
   link item (giving its openers a tag) and one customer link per customer.
2. Serves bench/bare.py's redirect and then wsgi:app with the same gunicorn settings (gevent, as deployed) and
   drives each with wrk at full speed: opens/s, p50/p99, the ratio. Then drives Siyu again paced at half of its
   own rate (each connection waits between requests) and prints p99 there.
3. For each --wecom-latency (default: 0 and 50ms±20ms; bench/latency.py), the same noted opens are recorded
   afresh by --queue-workers worker processes started at once, against the fake WeCom answering after that
   latency: first opens recorded/s (from the first recorded to the last), the wall time with the alerts, and
   the checks: each (link, customer, day) is one open, one timeline entry, one alert sent and one mark_tag,
   however many requests hit it and however many workers raced to record them; every 302 was noted
   (reloads); the alerts went out in fewer app messages than customers (coalesced per member).

Needs wrk (apt-get install wrk), PostgreSQL and Redis. It drops and recreates the schema of the database it is
given: point it at a scratch database (the Makefile uses siyu_bench_radar).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from bench.latency import Latency, add_latency_option, latencies, with_latency  # noqa: E402 - run as a script
from bot.config import Settings  # noqa: E402 - after sys.path.insert: run as a script
from bot.jobs.queue import DEFAULT, JOB_OPTIONS, queue  # noqa: E402 - after sys.path.insert: run as a script
from bot.sandbox import corp_for, create_fake_wecom, serve_in_thread, simulator_for  # noqa: E402 - run as a script
from bot.services.radar.opens import RECORD_OPENS  # noqa: E402 - after sys.path.insert: run as a script

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


#: what a recording run writes, emptied before the next run records the same opens again
RECORDED = ("radar_opens", "radar_alerts", "follow_tags", "webhook_deliveries", "webhook_events")


def record_at(args: argparse.Namespace, env: dict[str, str], corp: Any, noted: list[Any], latency: Latency) -> dict:
    """The noted opens recorded afresh by the queue workers, WeCom answering after ``latency``."""
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(args.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(RECORDED)}")
        conn.execute("DELETE FROM customer_events WHERE kind IN ('link_opened', 'tag_added')")
    client = redis.Redis.from_url(args.redis_url)
    client.delete("siyu:radar:opens", "siyu:radar:wake", "siyu:radar:draining")
    client.rpush("siyu:radar:opens", *noted)
    queue(DEFAULT, client).enqueue_call(RECORD_OPENS, **JOB_OPTIONS)  # as the noter does when it raises the flag
    corp.app_message_times.clear()  # a fresh run: WeCom's duplicate check has seen none of its cards
    calls, messages = len(corp.calls), len(corp.app_messages)
    port = free_port()
    server = serve_in_thread(with_latency(create_fake_wecom(corp), latency), port=port)
    run_env = env | {"SIYU_SANDBOX_PORT": str(port)}
    print(f"[{latency}] recording {len(noted)} noted opens with {args.queue_workers} worker processes …", flush=True)
    started = time.monotonic()
    commands = [[str(BIN / "flask"), "worker", "--burst"]] * args.queue_workers
    if args.py_spy:
        # py-spy (pip install py-spy; not a dependency of Siyu) samples each worker: collapsed stacks to read
        commands = [
            [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200", "--nonblocking", "--gil",
             "-o", str(Path(args.py_spy) / f"radar-worker-{n}-{latency.fixed * 1000:g}ms.txt"), "--", *cmd]
            for n, cmd in enumerate(commands)
        ]  # fmt: skip
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=run_env) for cmd in commands]
    for w in workers:
        w.wait()
    wall = time.monotonic() - started
    server.shutdown()
    db = args.database_url
    opens, reloads, visitors = query_one(
        db, "SELECT count(*), coalesce(sum(count), 0), count(DISTINCT visitor) FROM radar_opens"
    )
    events, span = query_one(
        db,
        "SELECT count(*), coalesce(extract(epoch FROM max(at) - min(at)), 0) FROM customer_events "
        "WHERE kind = 'link_opened'",
    )
    (alerts,) = query_one(db, "SELECT count(*) FROM radar_alerts")
    (sent,) = query_one(db, "SELECT count(*) FROM radar_alerts WHERE status = 'sent'")
    cards = [m for m in corp.app_messages[messages:] if "打开了" in m.get("textcard", {}).get("title", "")]
    return {
        "latency": latency,
        "wall": wall,
        "rate": opens / max(float(span), 0.001) if opens > 1 else 0.0,
        "opens": opens,
        "reloads": reloads,
        "visitors": visitors,
        "events": events,
        "alerts": alerts,
        "sent": sent,
        "cards": len(cards),
        "marks": corp.calls[calls:].count("externalcontact/mark_tag"),
        "left": client.llen("siyu:radar:opens"),
    }


def answering(port: int, path: str, timeout: float = 120.0) -> None:
    """Wait until the server answers a link (gunicorn listens before its workers have loaded the app: on a
    loaded machine that takes seconds, which would count as wrk's errors)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"User-Agent": "curl/8 (warm-up: a preview, not an open)"})
            if conn.getresponse().status in (302, 200):
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.5)
    raise SystemExit(f"nothing answers on port {port}")


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
    parser.add_argument("--py-spy", metavar="DIR", help="sample each recording worker with py-spy into DIR")
    parser.add_argument("--skip-redirect", action="store_true", help="only note the opens (no wrk runs)")
    add_latency_option(parser)
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
    if args.skip_redirect:  # each customer opens their link and reloads it, noted as the redirect notes them
        at = datetime.now(UTC).replace(tzinfo=None).isoformat()
        entries = [json.dumps({"t": p[3:], "v": "", "via": "link", "code": "", "at": at}) for p in paths]
        redis.Redis.from_url(args.redis_url).rpush("siyu:radar:opens", *entries, *entries)
    apps = () if args.skip_redirect else (("bare Flask redirect", "bench.bare:app"), ("Siyu /r/<token>", "wsgi:app"))
    for name, app in apps:
        port = free_port()
        proc = gunicorn(app, port, env, args.web_workers, "gevent", 1)
        try:
            wait_for_port(port)
            answering(port, paths[0])
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
    none = {"rps": 0.0, "requests": 0, "errors": 0, "p50_us": 0, "p99_us": 0}
    siyu, bare = results.get("Siyu /r/<token>", none), results.get("bare Flask redirect", none)
    paced = results.get("Siyu at half rate", none)
    noted = redis.Redis.from_url(args.redis_url).llen("siyu:radar:opens")
    served = siyu["requests"] + paced["requests"]

    noted_opens = redis.Redis.from_url(args.redis_url).lrange("siyu:radar:opens", 0, -1)
    runs = [record_at(args, env, corp, noted_opens, latency) for latency in latencies(args.wecom_latency)]

    ratio = siyu["rps"] / bare["rps"] if bare["rps"] else 0.0
    print()
    print(
        f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, shared "
        f"with other work while measured · gunicorn {args.web_workers} workers (gevent) · wrk {args.wrk_threads} "
        f"threads, {args.connections} connections, {args.duration}s"
    )
    print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, r in results.items():
        print(f"{name:24}{r['rps']:>10.0f}{r['p50_us'] / 1000:>10.2f}{r['p99_us'] / 1000:>10.2f}{r['errors']:>8}")
    print(f"Siyu / bare: {ratio:.0%} (target ≥ 30 %); opens/s {siyu['rps']:.0f} (target ≥ 1,000)")
    print(f"p99 at half rate: {paced['p99_us'] / 1000:.1f} ms (target ≤ 20 ms)")
    print(f"redirects served {served}; noted before recording {noted}")
    print()
    print(f"recording by {args.queue_workers} worker processes (the same {noted} noted opens each run):")
    print(
        f"{'WeCom latency':16}{'first opens':>12}{'opens/s':>9}{'wall s':>8}{'alerts sent':>12}{'messages':>10}"
        f"{'mark_tag':>10}{'left':>6}"
    )
    ok = siyu["errors"] == 0 and paced["errors"] == 0
    once = True
    for r in runs:
        print(
            f"{r['latency']!s:16}{r['opens']:>12}{r['rate']:>9.0f}{r['wall']:>8.1f}{r['sent']:>12}{r['cards']:>10}"
            f"{r['marks']:>10}{r['left']:>6}"
        )
        once = once and r["opens"] == r["visitors"] == r["events"] == r["alerts"] == r["sent"] == r["marks"]
        once = once and 0 < r["cards"] <= r["sent"]
        ok = ok and r["left"] == 0 and r["reloads"] == noted
    print(f"distinct links opened: {runs[0]['visitors']} of {len(paths)}; arrivals recorded {runs[0]['reloads']}")
    ok = ok and once
    print("exactly once per (link, customer, day):", "yes" if once else "NO")
    print("RESULT:", "ok" if ok else "PROBLEM")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
