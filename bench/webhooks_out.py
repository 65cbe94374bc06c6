"""Webhooks-out benchmark: Siyu's sender against real HTTP receivers on loopback.

    make bench-webhooks     (or: .venv/bin/python bench/webhooks_out.py [--events 20000 --workers 2])

Receivers (a child process, gevent): ``fast`` answers at once, ``slow`` after 200 ms, ``flaky`` fails every
other request, ``hang`` holds each request for 30 s. Each verifies every signature. Siyu's worker processes
(``flask worker``) send; this process plays the scheduler's sweep. Phases:
1. backlog: --events events for ``fast`` alone, written at once; deliveries/s until all arrive (target ≥ 500);
2. stream: --rate events/s for --seconds to ``fast`` alone; p50/p99 from the event to its delivery;
3. the same stream with every receiver subscribed: ``fast``'s p99 again (a hanging receiver must cost it
   nothing), then what each receiver got: lost (never delivered nor pending), duplicates, still retrying.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.callbacks import bench_env, free_port, wait_for_port  # noqa: E402 - after sys.path.insert
from bench.customers import seeded_app  # noqa: E402 - after sys.path.insert

BIN = Path(sys.executable).parent
RECEIVERS = {"fast": ("ok", 0.0), "slow": ("slow", 0.2), "flaky": ("flaky", 0.0), "hang": ("hang", 30.0)}


def serve_receivers(ports: dict[str, int], secrets: dict[str, str]) -> None:
    """Child process: one receiver per port, served by gevent (a request that hangs holds a greenlet only)."""
    from gevent import monkey

    monkey.patch_all()
    import socket

    from gevent.pool import Pool
    from gevent.pywsgi import WSGIServer

    from bot.sandbox.receiver import WebhookReceiver

    servers = []
    for name, port in ports.items():
        mode, delay = RECEIVERS[name]
        app = WebhookReceiver([secrets[name]], mode=mode, delay=delay, keep=10**7)
        # As any production HTTP server does (nginx's tcp_nodelay): without it, the answer's headers and body
        # leave in two segments and the second waits for the client's delayed ACK (40 ms a request).
        listener = socket.create_server(("127.0.0.1", port), backlog=1024)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = WSGIServer(listener, app, log=None, spawn=Pool(2000))
        server.start()
        servers.append(server)
    while True:
        time.sleep(3600)


def received(port: int) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"http://127.0.0.1:{port}/?all=1", timeout=30).json()
    return answer


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench_webhooks")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--customers", type=int, default=5000, help="order keys the events spread over")
    parser.add_argument("--rate", type=int, default=200, help="events per second in the stream phases")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    app = seeded_app(args.database_url, args.redis_url, "SELECT 1", {"stores": 2, "staff": 4}, "a small directory")
    from bot.extensions import db
    from bot.services.webhooks import endpoints, jobs, outbox

    ports = {name: free_port() for name in RECEIVERS}
    urls = {name: f"http://127.0.0.1:{port}/hook" for name, port in ports.items()}
    with app.app_context():
        ids: dict[str, int] = {}
        secrets: dict[str, str] = {}
        for name, url in urls.items():
            endpoint = endpoints.create_endpoint(url, name, ["customer.added"], alert_userids=[], actor=None)
            endpoint.enabled = name == "fast"  # the others join in phase 3
            ids[name], secrets[name] = endpoint.id, endpoint.secret
        db.session.commit()

    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=serve_receivers, args=(ports, secrets), daemon=True)
    child.start()
    for port in ports.values():
        wait_for_port(port)
    env = bench_env(args.database_url, args.redis_url, free_port())
    workers: list[subprocess.Popen[bytes]] = []
    sequence = 0

    def emit(n: int, endpoint_ids: list[int]) -> None:
        nonlocal sequence
        items = []
        for _ in range(n):
            sequence += 1
            items.append(({"seq": sequence, "t": time.time()}, f"wm{sequence % args.customers}"))
        outbox.record("customer.added", items, endpoint_ids)
        db.session.commit()

    def wait_for(port: int, count: int, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with app.app_context():
                jobs.sweep_webhooks()  # the scheduler's part
            if len({r["id"] for r in received(port)["rows"]}) >= count:
                break
            time.sleep(0.2)
        return time.monotonic() - started

    def stream(endpoint_ids: list[int]) -> list[int]:
        """--rate events/s for --seconds, in commits of a tenth of a second each; returns their seqs."""
        first = sequence + 1
        per_tick = max(1, args.rate // 10)
        started = time.monotonic()
        with app.app_context():
            for tick in range(args.seconds * 10):
                emit(per_tick, endpoint_ids)
                pause = started + (tick + 1) / 10 - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        return list(range(first, sequence + 1))

    def latencies(port: int, seqs: list[int]) -> list[float]:
        wanted = set(seqs)
        first: dict[int, float] = {}
        for row in received(port)["rows"]:
            seq = row["data"]["seq"]
            if seq in wanted and seq not in first:
                first[seq] = (row["at"] - row["data"]["t"]) * 1000
        return list(first.values())

    try:
        print(f"phase 1: {args.events} events waiting for one fast receiver, then the workers start …", flush=True)
        with app.app_context():
            started = time.monotonic()
            for start in range(0, args.events, 1000):
                emit(min(1000, args.events - start), [ids["fast"]])
            written = time.monotonic() - started
        workers += [subprocess.Popen([str(BIN / "flask"), "worker"], cwd=ROOT, env=env) for _ in range(args.workers)]
        drained = wait_for(ports["fast"], args.events, timeout=600)
        arrivals = [r["at"] for r in received(ports["fast"])["rows"]]
        rate = len(arrivals) / max(max(arrivals) - min(arrivals), 1e-9)  # first to last arrival
        print(
            f"  written in {written:.1f}s (the outbox); all delivered {drained:.1f}s after the workers started",
            flush=True,
        )

        print(f"phase 2: {args.rate}/s for {args.seconds}s to the fast receiver alone …", flush=True)
        seqs = stream([ids["fast"]])
        wait_for(ports["fast"], args.events + len(seqs), timeout=120)
        alone = latencies(ports["fast"], seqs)

        print("phase 3: the same stream to fast, slow, flaky and hang (30 s) …", flush=True)
        with app.app_context():
            from bot.models import WebhookEndpoint

            for name in ("slow", "flaky", "hang"):
                db.session.get(WebhookEndpoint, ids[name]).enabled = True
            db.session.commit()
        seqs3 = stream(list(ids.values()))
        wait_for(ports["fast"], args.events + len(seqs) + len(seqs3), timeout=120)
        wait_for(ports["slow"], len(seqs3), timeout=60)
        crowded = latencies(ports["fast"], seqs3)
        got = {name: received(port) for name, port in ports.items()}
        with app.app_context():
            counts = endpoints.counts(list(ids.values()))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
        child.terminate()

    print()
    print(f"machine: {os.cpu_count()} cores · {args.workers} worker processes · PostgreSQL + Redis")
    print(
        f"backlog: {rate:.0f} deliveries/s to one fast receiver, first to last arrival"
        f" ({args.events} events; target ≥ 500)"
    )
    print(
        f"stream {args.rate}/s, fast alone:        p50 {statistics.median(alone):.0f} ms · "
        f"p99 {percentile(alone, 99):.0f} ms ({len(alone)}/{len(seqs)} delivered)"
    )
    print(
        f"stream {args.rate}/s, beside slow/flaky/hang: p50 {statistics.median(crowded):.0f} ms · "
        f"p99 {percentile(crowded, 99):.0f} ms ({len(crowded)}/{len(seqs3)} delivered)"
    )
    total_fast = args.events + len(seqs) + len(seqs3)
    lost = 0
    for name in RECEIVERS:
        rows = got[name]["rows"]
        unique = len({r["id"] for r in rows})
        sent = total_fast if name == "fast" else len(seqs3)
        c = counts[ids[name]]
        missing = sent - c["delivered"] - c["pending"] - c["failed"]
        lost += missing
        print(
            f"{name:>5}: {got[name]['attempts']} requests · {unique} events received · {len(rows) - unique} duplicates"
            f" · Siyu's records: {c['delivered']} delivered, {c['pending']} retrying, {c['failed']} given up"
            f" · lost {missing}"
        )
    print(json.dumps({"events": total_fast, "lost": lost}))
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
