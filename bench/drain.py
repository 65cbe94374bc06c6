"""Event drain benchmark: how fast worker processes empty the queue when WeCom answers slowly.

    make bench-drain       (or: .venv/bin/python bench/drain.py --help)

For each --wecom-latency (default: 0 and 50ms±20ms):
1. A fresh schema; a fake WeCom with N customers just added, served from a thread of this process and
   answering every API call after the given latency (bench/latency.py).
2. N signed, encrypted add_external_contact callbacks go through Siyu's real webhook (in this process),
   every --edit-every-th customer is edited by their member right away (edit_external_contact), and every
   --dup-every-th callback is re-delivered, as WeCom does.
3. --queue-workers `flask worker --burst` processes drain the queue. Printed: events/s from the first
   event processed to the last, the workers' wall time, WeCom reads per event, the workers' CPU per event
   (with and without their start-up, measured by one worker started on the empty queue first), PostgreSQL
   commits per event, and the checks: every event done on its first attempt (none twice, none lost).

Target (issue 24): ≥ 300 events/s with 2 workers at 50 ms ± 20. Needs PostgreSQL and Redis; it drops and
recreates the schema of the database it is given.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.callbacks import BIN, bench_env, free_port, query_one, reset_database  # noqa: E402 - after sys.path.insert: run as a script
from bench.latency import Latency, add_latency_option, latencies, with_latency  # noqa: E402 - after sys.path.insert: run as a script


def callbacks(corp, sim, events: int, edit_every: int, dup_every: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The plaintexts to deliver, in order: adds, some edits right after, some re-deliveries."""
    from bot.sandbox.simulator import event_xml

    staff = sorted(corp.users)
    out: list[str] = []
    for n in range(events):
        userid = staff[n % len(staff)]
        contact, _ = corp.add_contact(sim.person_name(), 1, userid, state="bench-drain")
        out.append(
            event_xml(
                corp.corp_id,
                "change_external_contact",
                ChangeType="add_external_contact",
                UserID=userid,
                ExternalUserID=contact.external_userid,
                State="bench-drain",
            )
        )
        if edit_every and n % edit_every == edit_every - 1:
            out.append(
                event_xml(
                    corp.corp_id,
                    "change_external_contact",
                    ChangeType="edit_external_contact",
                    UserID=userid,
                    ExternalUserID=contact.external_userid,
                )
            )
        if dup_every and n % dup_every == dup_every - 1:
            out.append(out[max(0, len(out) - 1 - sim.rng.randrange(1, 20))])  # WeCom re-sends within seconds
    return out


def deliver(app, sim, plaintexts: list[str], threads: int = 8) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """POST each callback to the webhook through the app's test client, a few at a time."""
    envelopes = [sim.envelope(p) for p in plaintexts]
    statuses: dict[int, int] = {}

    def post(envelope: tuple[str, dict[str, str]]) -> int:
        body, query = envelope
        res = app.test_client().post("/wecom/callback", query_string=query, data=body.encode(), content_type="text/xml")
        return int(res.status_code)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for status in pool.map(post, envelopes):
            statuses[status] = statuses.get(status, 0) + 1
    return statuses


def cpu_now() -> dict[str, float]:
    """CPU seconds so far: the workers (children waited for) and this process (the fake WeCom). PostgreSQL's
    backends end with the workers' connections, so their CPU is not counted here."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "workers": children.ru_utime + children.ru_stime,
        "fake WeCom": time.process_time(),
    }


def run(args: argparse.Namespace, latency: Latency) -> dict:
    import logging

    from bot import create_app
    from bot.config import Settings
    from bot.extensions import db
    from bot.sandbox import corp_for, create_fake_wecom, serve_in_thread, simulator_for

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sandbox_port = free_port()
    env = bench_env(args.database_url, args.redis_url, sandbox_port)
    shared = ("SIYU_SANDBOX", "SIYU_SANDBOX_PORT", "SIYU_LOG_LEVEL", "WECOM_BUDGET_PER_MINUTE")
    os.environ.update({k: env[k] for k in shared})  # the webhook in this process, as the workers see it
    reset_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    settings = Settings.from_env(env)
    corp = corp_for(settings)
    sim = simulator_for(settings, corp, "http://unused/", seed=1)
    sim.seed_corp(stores=4, staff_per_store=5)
    plaintexts = callbacks(corp, sim, args.events, args.edit_every, args.dup_every)

    # One worker started on the empty queue: its start-up CPU (imports, the app), taken off the per-event figure.
    idle_before = cpu_now()["workers"]
    subprocess.run([str(BIN / "flask"), "worker", "--burst"], cwd=ROOT, env=env, check=True, capture_output=True)
    start_up = cpu_now()["workers"] - idle_before

    app = create_app({"database_url": args.database_url, "redis_url": args.redis_url})
    print(f"[{latency}] delivering {len(plaintexts)} callbacks to the webhook …", flush=True)
    statuses = deliver(app, sim, plaintexts)
    with app.app_context():
        app.extensions["siyu.inbox"].settle()
        app.extensions["siyu.inbox"].close()
        db.session.remove()
        db.engine.dispose()
    (stored,) = query_one(args.database_url, "SELECT count(*) FROM callback_events")

    server = serve_in_thread(with_latency(create_fake_wecom(corp), latency), port=sandbox_port)
    corp.calls.clear()
    print(f"[{latency}] draining {stored} events with {args.queue_workers} worker process(es) …", flush=True)
    started = time.monotonic()
    commands = [[str(BIN / "flask"), "worker", "--burst"]] * args.queue_workers
    if args.py_spy:
        # py-spy (pip install py-spy; not a dependency of Siyu) samples each worker: collapsed stacks to read
        commands = [
            [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200", "--nonblocking", "--gil",
             "-o", str(Path(args.py_spy) / f"worker-{n}-{latency.fixed * 1000:g}ms.txt"), "--", *cmd]
            for n, cmd in enumerate(commands)
        ]  # fmt: skip
    commits_sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    (commits_before,) = query_one(args.database_url, commits_sql)
    cpu_before = cpu_now()
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env) for cmd in commands]
    for w in workers:
        w.wait()
    wall = time.monotonic() - started
    cpu = {k: v - cpu_before[k] for k, v in cpu_now().items()}
    time.sleep(0.5)  # the workers' backends report their counts as they end
    (commits_after,) = query_one(args.database_url, commits_sql)
    server.shutdown()
    done, once, not_done, first, last = query_one(
        args.database_url,
        "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'done' AND attempts = 1),"
        " count(*) FILTER (WHERE status <> 'done'), extract(epoch from min(processed_at)),"
        " extract(epoch from max(processed_at)) FROM callback_events",
    )
    (customers,) = query_one(args.database_url, "SELECT count(*) FROM customers")
    span = float(last - first) if done > 1 else 0.0
    return {
        "latency": latency,
        "statuses": statuses,
        "stored": stored,
        "done": done,
        "once": once,
        "not_done": not_done,
        "customers": customers,
        "span": span,
        "wall": wall,
        "rate": (done - 1) / span if span else 0.0,
        "reads": corp.calls.count("externalcontact/get"),
        "cpu": cpu,
        "start_up": start_up,
        "commits": int(commits_after) - int(commits_before) - 1,  # less this benchmark's own look
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--events", type=int, default=3000, help="customers added")
    parser.add_argument("--edit-every", type=int, default=5, help="every Nth added customer is edited at once")
    parser.add_argument("--dup-every", type=int, default=10, help="every Nth callback is re-delivered")
    parser.add_argument("--queue-workers", type=int, default=2, help="worker processes draining the queue")
    parser.add_argument("--py-spy", metavar="DIR", help="profile each worker with py-spy into DIR (collapsed stacks)")
    add_latency_option(parser)
    args = parser.parse_args()

    results = [run(args, latency) for latency in latencies(args.wecom_latency)]
    print()
    print(
        f"machine: {os.cpu_count()} cores · {args.queue_workers} worker processes · {args.events} adds, an edit of "
        f"1 in {args.edit_every}, a re-delivery of 1 in {args.dup_every} · fake WeCom in the benchmark's process"
    )
    print(f"{'WeCom latency':18}{'events':>8}{'events/s':>10}{'wall s':>8}{'reads/event':>13}{'not done':>10}")
    ok = True
    for r in results:
        reads = r["reads"] / r["done"] if r["done"] else 0.0
        print(f"{r['latency']!s:18}{r['done']:>8}{r['rate']:>10.0f}{r['wall']:>8.1f}{reads:>13.2f}{r['not_done']:>10}")
        delivered_ok = set(r["statuses"]) == {200}
        expected = args.events + (args.events // args.edit_every if args.edit_every else 0)
        ok = ok and delivered_ok and r["stored"] == expected and r["done"] == r["once"] == expected
        ok = ok and r["customers"] == args.events
    for r in results:
        per_event = ", ".join(f"{k} {v / r['done'] * 1000:.1f}" for k, v in r["cpu"].items()) if r["done"] else ""
        print(f"CPU ms per event at {r['latency']} (the workers' start-up included): {per_event}")
        if r["done"]:
            steady = (r["cpu"]["workers"] - args.queue_workers * r["start_up"]) / r["done"] * 1000
            print(
                f"  without the start-up ({r['start_up']:.2f} s CPU a worker): workers {steady:.1f} ms an event;"
                f" PostgreSQL commits an event {r['commits'] / r['done']:.2f}"
            )
    print("every event stored once and done on its first attempt, every customer mirrored:", "yes" if ok else "NO")
    print("RESULT:", "ok" if ok else "PROBLEM")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
