"""Customer-moment tracking benchmark: one corp moment asked of every member, against the sandbox.

    make bench-moments     (or: .venv/bin/python bench/moments.py [--customers 50000 --staff 500])

Fills a scratch PostgreSQL database with the directory (50 stores, --staff members) and --customers customers,
one member each; a fake WeCom in its own process (gevent) knows the same. Then, through the services the
workers run:
1. the dispatch: one add_moment_task to every member, its job followed until WeCom made the moment;
2. in the fake, every member posts it, one customer in ten likes it and one in twenty comments;
3. the first tracking pass (get_moment_task, then per member the customers it was meant for, who can see
   it, likes and comments; each reaction on its customer's timeline) — time and calls per second;
4. a second pass (likes and comments only: one call per member) — time.
Each at every --wecom-latency (default 0 and 50ms±20ms); checks the funnel counts every member, customer and
reaction once, and that the second pass adds nothing. Prints the load average beside the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.customers import seeded_app  # noqa: E402 - after sys.path.insert: run as a script
from bench.latency import add_latency_option, latencies  # noqa: E402 - after sys.path.insert: run as a script

SEED = """
INSERT INTO customers (external_userid, name, avatar, type, gender, corp_name, notes, created_at, updated_at)
SELECT 'wmbench' || c, '客户' || c, '', 1, c %% 3, '', '', now(), now() FROM generate_series(1, %(customers)s) c;
INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way, oper_userid, state, added_at, status)
SELECT c.id, (c.id %% %(staff)s) + 1, '', '', 1, '', '', now() - ((c.id %% 365) || ' days')::interval, 'active'
FROM customers c;
ANALYZE;
"""
LIKE_EVERY, COMMENT_EVERY = 10, 20


def serve_fake(port: int, customers: int, staff: int, latency: str, settings_env: dict[str, str]) -> None:
    """Child process: the fake WeCom with the database's members and customers, served by gevent, answering
    each API call after ``latency``; ``POST /bench/post-all/<moment_id>`` has every member post the moment and
    some customers like and comment (what members' and customers' clients do)."""
    from gevent import monkey

    monkey.patch_all()
    from flask import jsonify
    from gevent.pywsgi import WSGIServer

    from bench.latency import parse_latency, with_latency
    from bot.config import Settings
    from bot.sandbox import corp_for, create_fake_wecom
    from bot.sandbox.corp import Contact, Follow
    from bot.sandbox.moments import ledger, post_moment, react_to_moment

    corp = corp_for(Settings.from_env(settings_env))
    department = corp.add_department("压测门店")
    for m in range(1, staff + 1):
        corp.add_user(f"staff{m}", f"员工{m}", department)
    for c in range(1, customers + 1):
        contact = Contact(f"wmbench{c}", f"客户{c}", 1)
        member = f"staff{c % staff + 1}"
        contact.follows[member] = Follow(member)
        corp.contacts[contact.external_userid] = contact
    fake = create_fake_wecom(corp)

    @fake.post("/bench/post-all/<moment_id>")
    def post_all(moment_id: str) -> Any:
        likes = comments = 0
        for userid in list(ledger(corp).posts[moment_id].visible):
            for n, external_userid in enumerate(post_moment(corp, moment_id, userid)):
                if n % LIKE_EVERY == 0:
                    react_to_moment(corp, moment_id, userid, external_userid, "like")
                    likes += 1
                if n % COMMENT_EVERY == 1:
                    react_to_moment(corp, moment_id, userid, external_userid, "comment")
                    comments += 1
        return jsonify(likes=likes, comments=comments)

    WSGIServer(("127.0.0.1", port), with_latency(fake, parse_latency(latency)), log=None).serve_forever()


def start_fake(port: int, args: argparse.Namespace, latency: str, env: dict[str, str]) -> subprocess.Popen:
    fake = subprocess.Popen(
        [
            sys.executable, __file__, "--serve-fake", str(port), str(args.customers), str(args.staff),
            "--fake-latency", latency,
        ],
        cwd=ROOT,
        env={**env, "SIYU_SANDBOX_PORT": str(port)},
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while True:  # the fake is ready once it answers
        try:
            requests.get(f"http://127.0.0.1:{port}/sandbox/state", timeout=5)
            return fake
        except requests.RequestException:
            if time.monotonic() > deadline or fake.poll() is not None:
                raise SystemExit("the fake WeCom did not start") from None
            time.sleep(1)


def calls(port: int) -> int:
    return int(requests.get(f"http://127.0.0.1:{port}/sandbox/state", timeout=30).json().get("calls", 0))


def run(app: Any, port: int) -> dict[str, Any]:
    """One moment to every member: dispatched, posted by all in the fake, then two tracking passes."""
    from bot.extensions import db
    from bot.models import CustomerEvent, Moment, MomentStatus, Role, User
    from bot.services.moments import dispatch, tracking
    from bot.services.users.accounts import create_user

    with app.app_context():
        admin = db.session.scalar(select(User).where(User.username == "bench-admin"))
        admin = admin or create_user("bench-admin", "bench-admin-password-0", Role.admin)
        moment = Moment(
            text="冬季新品到店", senders={"everyone": True}, created_by=admin.id, status=MomentStatus.approved
        )
        db.session.add(moment)
        db.session.commit()
        started = time.perf_counter()
        dispatch.dispatch(moment)
        db.session.commit()
        dispatch_s = time.perf_counter() - started
        assert moment.status == MomentStatus.posted, (moment.status, moment.error)
        made = requests.post(f"http://127.0.0.1:{port}/bench/post-all/{moment.moment_id}", timeout=600).json()
        events_before = db.session.scalar(select(func.count()).select_from(CustomerEvent))
        passes = []
        for _ in range(2):
            before = calls(port)
            started = time.perf_counter()
            tracking.track(moment)
            db.session.commit()
            passes.append((time.perf_counter() - started, calls(port) - before))
        funnel = tracking.funnel(moment)
        events = db.session.scalar(select(func.count()).select_from(CustomerEvent)) - events_before
        for table in ("moment_reactions", "moment_members"):  # the next run starts from no reactions
            db.session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - the benchmark's own table names
        db.session.commit()
    return {"dispatch_s": dispatch_s, "made": made, "passes": passes, "funnel": funnel, "events": events}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_moments")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=500)
    add_latency_option(parser)
    parser.add_argument(
        "--serve-fake", nargs=3, type=int, metavar=("PORT", "CUSTOMERS", "STAFF"), help=argparse.SUPPRESS
    )
    parser.add_argument("--fake-latency", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SIYU_"))} | {"SIYU_SANDBOX": "1"}
    if args.serve_fake:
        serve_fake(*args.serve_fake, args.fake_latency, env)
        return 0

    from tests.conftest import free_port

    port = free_port()
    os.environ["SIYU_SANDBOX_PORT"] = str(port)
    params = {"customers": args.customers, "stores": args.stores, "staff": args.staff}
    app = seeded_app(args.database_url, args.redis_url, SEED, params, f"{args.customers:,} customers")
    ok = True
    results = []
    for latency in latencies(args.wecom_latency):
        print(f"[WeCom at {latency}] starting the fake WeCom …", flush=True)
        fake = start_fake(port, args, f"{latency.fixed * 1000:g}ms±{latency.jitter * 1000:g}ms", env)
        try:
            r = run(app, port)
        finally:
            fake.terminate()
            fake.wait(10)
        f, made = r["funnel"], r["made"]
        expected = {
            "asked": args.staff,
            "posted": args.staff,
            "visible": args.customers,
            "reached": args.customers,
            "likes": made["likes"],
            "comments": made["comments"],
        }
        once = f == expected and r["events"] == made["likes"] + made["comments"]
        ok = ok and once and r["passes"][1][1] == args.staff + 1
        results.append((latency, r, once))
    print()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"members {args.staff:,} · customers {args.customers:,} · PostgreSQL · {os.cpu_count()} cores · load {load}")
    for latency, r, once in results:
        (first_s, first_calls), (second_s, second_calls) = r["passes"]
        print(f"[WeCom at {latency}] likes {r['made']['likes']:,} · comments {r['made']['comments']:,}")
        print(f"  dispatch (upload-free text, one task)  {r['dispatch_s']:8.1f} s")
        print(
            f"  first tracking pass                    {first_s:8.1f} s   {first_calls:,} calls → "
            f"{first_calls / first_s:,.0f} calls/s"
        )
        print(
            f"  second pass (likes and comments)       {second_s:8.1f} s   {second_calls:,} calls → "
            f"{second_calls / second_s:,.0f} calls/s"
        )
        print(f"  funnel and timeline counted once       {'yes' if once else 'NO'}   {r['funnel']}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
