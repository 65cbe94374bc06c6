"""Mass-send benchmark: a 1,000,000-recipient send over 2,000 members, against the sandbox.

    make bench-mass-send     (or: .venv/bin/python bench/mass_send.py [--customers 1000000 --staff 2000])

Fills a scratch PostgreSQL database with the directory (50 stores, 2,000 members) and a million customers,
each followed by one member and one in twenty by a second one; a fake WeCom in its own process (gevent)
knows the same customers. Then, through the services the dispatch worker runs:
1. resolve, chunk and record: one sender per customer, the per-customer cap, chunks of ≤ 10,000 per member
   and their idempotency keys, all written by the database — time and this process's peak memory
   (targets: ≤ 30 s, ≤ 500 MB);
2. the dispatch itself: every chunk recorded, called (add_msg_template over HTTP) and its answer recorded —
   time and calls per second;
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

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.customers import seeded_app  # noqa: E402 - after sys.path.insert: run as a script

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


def serve_fake(port: int, customers: int, staff: int, settings_env: dict[str, str]) -> None:
    """Child process: the fake WeCom knowing the same members and customers as the database, served by gevent."""
    from gevent import monkey

    monkey.patch_all()
    from gevent.pywsgi import WSGIServer

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
    WSGIServer(("127.0.0.1", port), create_fake_wecom(corp), log=None).serve_forever()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_sends")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--staff", type=int, default=2000)
    parser.add_argument(
        "--serve-fake", nargs=3, type=int, metavar=("PORT", "CUSTOMERS", "STAFF"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SIYU_"))} | {"SIYU_SANDBOX": "1"}
    if args.serve_fake:
        serve_fake(*args.serve_fake, env)
        return 0

    from tests.conftest import free_port

    port = free_port()
    os.environ["SIYU_SANDBOX_PORT"] = str(port)
    fake = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake", str(port), str(args.customers), str(args.staff)],
        cwd=ROOT,
        env={**env, "SIYU_SANDBOX_PORT": str(port)},
    )
    try:
        params = {"customers": args.customers, "stores": args.stores, "staff": args.staff}
        app = seeded_app(args.database_url, args.redis_url, SEED, params, f"{args.customers:,} customers")
        from bot.extensions import db
        from bot.models import MassSend, Role, SendStatus
        from bot.services.sends import dispatch, recipients
        from bot.services.users.accounts import create_user

        deadline = time.monotonic() + 300
        while True:  # the fake is ready once it answers
            try:
                requests.get(f"http://127.0.0.1:{port}/sandbox/state", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or fake.poll() is not None:
                    raise SystemExit("the fake WeCom did not start") from None
                time.sleep(1)

        with app.app_context():
            admin = create_user("bench-admin", "bench-admin-password-0", Role.admin)
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

            started = time.perf_counter()
            dispatch.dispatch(send)
            db.session.commit()
            dispatch_s = time.perf_counter() - started
            chunks = dispatch.counts(send)
        state = requests.get(f"http://127.0.0.1:{port}/sandbox/state", timeout=30).json()
        made = sum(chunks.values())
        print()
        print(f"recipients {send.targeted:,} · members {args.staff:,} · PostgreSQL · {os.cpu_count()} cores")
        print(f"resolve + chunk + record        {resolve_s:8.1f} s   (target ≤ 30 s)")
        print(f"peak memory of this process     {resolve_peak:8.0f} MB  (before: {before:.0f} MB; target ≤ 500 MB)")
        print(
            f"dispatch: {made:,} chunks in    {dispatch_s:8.1f} s   → {made / dispatch_s:,.1f} calls/s, "
            f"{send.targeted / dispatch_s:,.0f} recipients/s"
        )
        print(f"chunks by status: {chunks}")
        print(
            f"the fake holds {state['mass_tasks']:,} tasks for {state['mass_recipients']:,} recipients "
            f"({state['mass_unique_recipients']:,} distinct)"
        )
        once = state["mass_recipients"] == state["mass_unique_recipients"] == send.targeted
        ok = resolve_s <= 30 and resolve_peak <= 500 and chunks == {"created": made} and once
        print("RESULT:", "ok" if ok else "PROBLEM")
        return 0 if ok else 1
    finally:
        fake.terminate()
        fake.wait(10)


if __name__ == "__main__":
    sys.exit(main())
