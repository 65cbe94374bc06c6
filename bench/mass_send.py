"""Mass-send benchmark: a 1,000,000-recipient send over 2,000 members, against the sandbox.

    make bench-mass-send     (or: .venv/bin/python bench/mass_send.py [--customers 1000000 --staff 2000])

Fills a scratch PostgreSQL database with the directory (50 stores, 2,000 members) and a million customers,
each followed by one member and one in twenty by a second one; a fake WeCom in its own process (gevent)
knows the same customers. Then, through the services the dispatch worker runs:
1. resolve, chunk and record: one sender per customer, the per-customer cap, chunks of ≤ 10,000 per member
   and their idempotency keys, all written by the database — time and this process's peak memory
   (targets: ≤ 30 s, ≤ 500 MB);
2. the dispatch itself: every chunk recorded, called (add_msg_template over HTTP, members side by side) and
   its answer recorded — time and calls per second, with the fake answering at each --wecom-latency
   (default 0 and 50ms±20ms; target at 50 ms: ≥ 100 calls/s), and the time spent on the database per wave;
and checks that the fake received every recipient exactly once.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text

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
INSERT INTO follow_relations (customer_id, staff_id, remark, description, add_way, oper_userid, state, added_at, status)
SELECT c.id, ((c.id + 7) %% %(staff)s) + 1, '', '', 1, '', '', now(), 'active' FROM customers c WHERE c.id %% 20 = 0;
ANALYZE;
"""


def serve_fake(port: int, customers: int, staff: int, latency: str, settings_env: dict[str, str]) -> None:
    """Child process: the fake WeCom knowing the same members and customers as the database, served by gevent,
    answering each API call after ``latency`` (bench/latency.py)."""
    from gevent import monkey

    monkey.patch_all()
    from gevent.pywsgi import WSGIServer

    from bench.latency import parse_latency, with_latency
    from bot.config import Settings
    from bot.sandbox import corp_for, create_fake_wecom
    from bot.sandbox.corp import Contact, Follow

    corp = corp_for(Settings.from_env(settings_env))
    department = corp.add_department("压测门店")
    for m in range(1, staff + 1):
        corp.add_user(f"staff{m}", f"员工{m}", department)
    for c in range(1, customers + 1):
        contact = Contact(f"wmbench{c}", f"客户{c}", 1)
        first = f"staff{c % staff + 1}"
        contact.follows[first] = Follow(first)
        if c % 20 == 0:
            second = f"staff{(c + 7) % staff + 1}"
            contact.follows[second] = Follow(second)
        corp.contacts[contact.external_userid] = contact
    corp.mass_cap = 10**9  # the benchmark measures Siyu, not the fake's cap bookkeeping
    app = with_latency(create_fake_wecom(corp), parse_latency(latency))
    WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


class DatabaseTime:
    """The time the dispatch spends waiting on the database (statements and commits), and its waves (one
    claim each): what bounds a dispatch when WeCom answers in tens of milliseconds."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        self.seconds, self.waves = 0.0, 0
        self._hooks = [
            (engine, "before_cursor_execute", self._start),
            (engine, "after_cursor_execute", self._stop),
            (Session, "before_commit", self._start_commit),
            (Session, "after_commit", self._stop_commit),
        ]
        for target, name, hook in self._hooks:
            event.listen(target, name, hook)

    def close(self) -> None:
        from sqlalchemy import event

        for target, name, hook in self._hooks:
            event.remove(target, name, hook)

    def _start(self, conn: Any, *args: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _stop(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seconds += time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        if statement.startswith("UPDATE send_chunks SET status") and "RETURNING" in statement:
            self.waves += 1  # a wave's claim

    def _start_commit(self, session: Any) -> None:
        session.info["bench_commit"] = time.perf_counter()

    def _stop_commit(self, session: Any) -> None:
        self.seconds += time.perf_counter() - session.info.pop("bench_commit", time.perf_counter())


def run(app: Any, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """One send to everyone: resolved, chunked and recorded, then dispatched; what it took."""
    from bot.extensions import db, redis_conn
    from bot.models import MassSend, Role, SendStatus, User
    from bot.services.sends import dispatch, recipients
    from bot.services.users.accounts import create_user

    with app.app_context():
        # A new fake WeCom for each run: the token and budgets kept for the last one mean nothing to it (a
        # token it never issued would be refused by a whole wave's calls at once).
        redis_conn.client.flushdb()
        admin = db.session.query(User).filter_by(username="bench-admin").one_or_none()
        admin = admin or create_user("bench-admin", "bench-admin-password-0", Role.admin)
        send = MassSend(
            name="压测群发",
            text="{store_name} 会员日",
            target={"rule": {"op": "and", "conditions": [{"type": "lost", "value": False}]}},
            target_label="rule",
            created_by=admin.id,
            status=SendStatus.approved,
        )
        db.session.add(send)
        db.session.commit()
        before = peak_mb()
        started = time.perf_counter()
        recipients.resolve(send)
        db.session.commit()
        resolve_s = time.perf_counter() - started
        resolve_peak = peak_mb()
        print(f"resolve, chunk and record: {resolve_s:.1f} s for {send.targeted:,} recipients", flush=True)
        timed = DatabaseTime(db.engine)
        started = time.perf_counter()
        try:
            dispatch.dispatch(send)
            db.session.commit()
        finally:
            timed.close()
        dispatch_s = time.perf_counter() - started
        chunks = dispatch.counts(send)
        targeted = send.targeted
        # The next run sends to the same customers: this send's record goes, so that no cap counts it.
        for table in ("send_recipients", "send_chunks", "mass_sends"):
            db.session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - the benchmark's own table names
        db.session.commit()
    state = requests.get(f"http://127.0.0.1:{port}/sandbox/state", timeout=30).json()
    return {
        "targeted": targeted,
        "resolve_s": resolve_s,
        "before": before,
        "peak": resolve_peak,
        "dispatch_s": dispatch_s,
        "database_s": timed.seconds,
        "waves": timed.waves,
        "chunks": chunks,
        "state": state,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_sends")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=2000)
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
    results = []
    ok = True
    for latency in latencies(args.wecom_latency):
        print(f"[WeCom at {latency}] starting the fake WeCom …", flush=True)
        fake = start_fake(port, args, f"{latency.fixed * 1000:g}ms±{latency.jitter * 1000:g}ms", env)
        try:
            r = run(app, port, args)
        finally:
            fake.terminate()
            fake.wait(10)
        made = sum(r["chunks"].values())
        once = r["state"]["mass_recipients"] == r["state"]["mass_unique_recipients"] == r["targeted"]
        ok = ok and r["resolve_s"] <= 30 and r["peak"] <= 500 and r["chunks"] == {"created": made} and once
        results.append((latency, r, made))
    print()
    print(f"members {args.staff:,} · PostgreSQL · {os.cpu_count()} cores · fake WeCom in its own process (gevent)")
    for latency, r, made in results:
        print(f"[WeCom at {latency}] recipients {r['targeted']:,}")
        print(f"  resolve + chunk + record        {r['resolve_s']:8.1f} s   (target ≤ 30 s)")
        print(f"  peak memory of this process     {r['peak']:8.0f} MB  (before: {r['before']:.0f} MB; target ≤ 500 MB)")
        print(
            f"  dispatch: {made:,} chunks in    {r['dispatch_s']:8.1f} s   → {made / r['dispatch_s']:,.1f} calls/s, "
            f"{r['targeted'] / r['dispatch_s']:,.0f} recipients/s (target at 50 ms: ≥ 100 calls/s)"
        )
        waves = max(1, r["waves"])
        print(
            f"  database time                   {r['database_s']:8.1f} s   ({r['waves']} waves: "
            f"{r['database_s'] / waves * 1000:,.0f} ms a wave, most of it while WeCom answers)"
        )
        print(f"  chunks by status: {r['chunks']}")
        print(
            f"  the fake holds {r['state']['mass_tasks']:,} tasks for {r['state']['mass_recipients']:,} recipients "
            f"({r['state']['mass_unique_recipients']:,} distinct)"
        )
    print("RESULT:", "ok" if ok else "PROBLEM")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
