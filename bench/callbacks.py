"""Callback benchmark: the webhook under gunicorn on PostgreSQL + Redis, beside a bare Flask endpoint.

    make bench            (or: .venv/bin/python bench/callbacks.py --help)

1. Pre-signs and pre-encrypts N distinct add_external_contact callbacks for customers that exist in a
   fake corp, and mixes in WeCom-style re-deliveries (every --dup-every-th request repeats an earlier one).
2. Serves bench/bare.py (an empty 200) and then wsgi:app with the same gunicorn settings (gevent workers by
   default, as deployed; --worker-class gthread to compare), and drives each
   with wrk for --duration seconds: accepted callbacks/s, p50/p99 latency, and their ratio.
3. Checks that every acknowledged callback is stored exactly once (none lost), then drains the queue with
   --queue-workers worker processes against the fake WeCom and checks each event was processed once.

Needs wrk (Debian: apt-get install wrk), PostgreSQL and Redis. It drops and recreates the schema of the
database it is given: point it at a scratch database (the Makefile uses siyu_bench).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.latency import Latency, parse_latency, with_latency  # noqa: E402 - after sys.path.insert: run as a script
from bot.config import Settings  # noqa: E402 - after sys.path.insert: run as a script
from bot.sandbox import corp_for, create_fake_wecom, serve_in_thread, simulator_for  # noqa: E402 - after sys.path.insert: run as a script
from bot.sandbox.simulator import event_xml  # noqa: E402 - after sys.path.insert: run as a script

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s")


def wait_for_app(port: int, timeout: float = 60.0) -> None:
    """Until gunicorn's workers answer: the master listens at once, but each worker builds the app after
    the fork (seconds for Siyu's), and requests sent meanwhile wait in the backlog, timed as slow answers.
    Workers boot side by side, so once one answers the others are moments away."""
    deadline = time.monotonic() + timeout
    wait_for_port(port, timeout)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /wecom/callback HTTP/1.0\r\nHost: bench\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/"):
                    time.sleep(1.0)
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no app answers on port {port} after {timeout}s")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process and its children (gunicorn's workers), from /proc."""
    total = 0.0
    try:
        kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    for p in [pid, *kids]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def reset_database(database_url: str) -> None:
    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{url.database}"')
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def query_one(database_url: str, sql: str) -> tuple:
    plain = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as conn:
        return conn.execute(sql).fetchone()  # type: ignore[return-value]


def gunicorn(
    app: str, port: int, env: dict[str, str], workers: int, worker_class: str, threads: int
) -> subprocess.Popen:
    if worker_class == "gevent":
        kind = ["-k", "gevent", "--worker-connections", "1000"]
    else:
        kind = ["-k", "gthread", "--threads", str(threads)]
    cmd = [
        str(BIN / "gunicorn"),
        "-w",
        str(workers),
        *kind,
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--keep-alive",
        "30",
        app,
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_wrk(port: int, requests_file: Path, threads: int, connections: int, duration: int) -> dict:
    env = {**os.environ, "SIYU_BENCH_REQUESTS": str(requests_file), "SIYU_BENCH_THREADS": str(threads)}
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        "5s",
        "-s",
        str(ROOT / "bench" / "wrk_callbacks.lua"),
        f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result: dict = {"sent": {}}
    for tid, sent in re.findall(r"^SENT (\d+) (\d+)$", out, re.M):
        result["sent"][int(tid)] = int(sent)
    lat = re.search(r"^LATENCY p50=(\d+) p90=(\d+) p99=(\d+) max=(\d+)$", out, re.M)
    summ = re.search(r"^SUMMARY (.*)$", out, re.M)
    if not lat or not summ:
        raise SystemExit("could not read wrk's output:\n" + out)
    result.update(zip(("p50_us", "p90_us", "p99_us", "max_us"), map(int, lat.groups()), strict=True))
    result.update({k: int(v) for k, v in (kv.split("=") for kv in summ.group(1).split())})
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("non2xx", "timeout", "connect", "read", "write"))
    return result


def bench_env(database_url: str, redis_url: str, sandbox_port: int) -> dict[str, str]:
    """The environment of every process of a benchmark: sandbox mode against the given services."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SIYU_SANDBOX": "1",
        "SIYU_SANDBOX_PORT": str(sandbox_port),
        "SIYU_LOG_LEVEL": "WARNING",
        "FLASK_APP": "wsgi",
        # The fake WeCom has no per-minute limit; WeCom's 10,000/min/API would stretch the drain over minutes.
        "WECOM_BUDGET_PER_MINUTE": "10000000",
    }
    for name in ("WECOM_CORP_ID", "WECOM_API_BASE"):
        env.pop(name, None)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--worker-class", choices=["gevent", "gthread"], default="gevent")
    parser.add_argument("--web-threads", type=int, default=16, help="threads per gunicorn worker (gthread only)")
    parser.add_argument("--queue-workers", type=int, default=2)
    parser.add_argument("--events", type=int, default=60000, help="distinct events prepared")
    parser.add_argument("--dup-every", type=int, default=10, help="every Nth request re-delivers an earlier one")
    parser.add_argument(
        "--wecom-latency",
        type=parse_latency,
        default=Latency(),
        metavar="DELAY[±JITTER]",
        help="the fake WeCom answers the drain's calls after this delay, e.g. 50ms±20ms (default 0; "
        "bench/drain.py measures the drain at 0 and at 50 ms)",
    )
    parser.add_argument("--no-drain", action="store_true", help="measure the webhook only (no queue drain)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2

    sandbox_port = free_port()
    env = bench_env(args.database_url, args.redis_url, sandbox_port)
    settings = Settings.from_env(env)

    print(f"preparing {args.events} signed, encrypted callbacks …", flush=True)
    reset_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    corp = corp_for(settings)
    sim = simulator_for(settings, corp, "http://unused/", seed=1)
    sim.seed_corp(stores=4, staff_per_store=5)
    staff = sorted(corp.users)
    lines: list[str] = []
    index: list[int] = []  # request i carries event index[i]
    for n in range(args.events):
        contact, _ = corp.add_contact(sim.person_name(), 1, staff[n % len(staff)], state="bench")
        plaintext = event_xml(
            corp.corp_id,
            "change_external_contact",
            ChangeType="add_external_contact",
            UserID=staff[n % len(staff)],
            ExternalUserID=contact.external_userid,
            State="bench",
        )
        body, query = sim.envelope(plaintext)
        path = "/wecom/callback?" + "&".join(f"{k}={v}" for k, v in query.items())
        lines.append(f"{path}\t{body}")
        index.append(n)
        if args.dup_every and n % args.dup_every == args.dup_every - 1:
            back = max(0, n - sim.rng.randrange(1, 50))  # WeCom re-sends within seconds
            lines.append(lines[index.index(back)])
            index.append(back)
    tmp = Path(tempfile.mkdtemp(prefix="siyu-bench-"))
    requests_file = tmp / "requests.tsv"
    requests_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    results = {}
    for name, app in (("bare Flask endpoint", "bench.bare:app"), ("Siyu webhook", "wsgi:app")):
        port = free_port()
        proc = gunicorn(app, port, env, args.web_workers, args.worker_class, args.web_threads)
        try:
            wait_for_app(port)
            print(f"driving the {name} for {args.duration}s …", flush=True)
            before = process_cpu(proc.pid)
            results[name] = run_wrk(port, requests_file, args.wrk_threads, args.connections, args.duration)
            results[name]["cpu_us"] = (process_cpu(proc.pid) - before) / max(1, results[name]["requests"]) * 1e6
        finally:
            stop(proc)
    bare, hook = results["bare Flask endpoint"], results["Siyu webhook"]

    # What was acknowledged must be stored. wrk counts completed responses; each thread's last
    # `connections / threads` requests may still have been in flight when it stopped.
    per_thread = args.connections // args.wrk_threads
    requests_of = {t: [index[i] for i in range(t, len(index), args.wrk_threads)] for t in range(args.wrk_threads)}

    def distinct(slack: int) -> int:
        seen: set[int] = set()
        for t, sent in hook["sent"].items():
            mine = requests_of[t]
            seen.update(mine[i % len(mine)] for i in range(max(0, sent - slack)))
        return len(seen)

    low, high = distinct(per_thread), distinct(0)
    (stored,) = query_one(args.database_url, "SELECT count(*) FROM callback_events")
    lost = max(0, low - stored) if hook["errors"] == 0 else None

    if args.no_drain:
        ratio = hook["rps"] / bare["rps"] if bare["rps"] else 0.0
        print(
            f"\nwebhook {hook['rps']:.0f}/s (p99 {hook['p99_us'] / 1000:.2f} ms, CPU {hook['cpu_us']:.0f} µs/request)"
        )
        print(f"bare {bare['rps']:.0f}/s (p99 {bare['p99_us'] / 1000:.2f} ms, CPU {bare['cpu_us']:.0f} µs/request)")
        print(f"webhook / bare: {ratio:.0%} · errors {hook['errors']} · distinct events sent {low}–{high}, ")
        print(f"stored {stored}, lost {lost} · load {os.getloadavg()[0]:.2f}")
        return 0 if hook["errors"] == 0 and lost == 0 and stored <= high else 1
    print(f"draining the queue with {args.queue_workers} worker process(es) …", flush=True)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    fake = with_latency(create_fake_wecom(corp), args.wecom_latency)
    serve_in_thread(fake, port=sandbox_port)
    started = time.monotonic()
    workers = [
        subprocess.Popen([str(BIN / "flask"), "worker", "--burst"], cwd=ROOT, env=env)
        for _ in range(args.queue_workers)
    ]
    for w in workers:
        w.wait()
    drained = time.monotonic() - started
    done, once, failed = query_one(
        args.database_url,
        "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'done' AND attempts = 1),"
        " count(*) FILTER (WHERE status <> 'done') FROM callback_events",
    )
    (customers,) = query_one(args.database_url, "SELECT count(*) FROM customers")
    api_reads = corp.calls.count("externalcontact/get")

    ratio = hook["rps"] / bare["rps"] if bare["rps"] else 0.0
    print()
    shape = f"{args.web_threads} threads each (gthread)" if args.worker_class == "gthread" else "gevent"
    print(
        f"machine: {os.cpu_count()} cores · gunicorn {args.web_workers} workers, {shape} · "
        f"wrk {args.wrk_threads} threads, {args.connections} connections, {args.duration}s"
    )
    print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'CPU µs/req':>12}")
    for name, r in results.items():
        print(
            f"{name:24}{r['rps']:>10.0f}{r['p50_us'] / 1000:>10.2f}{r['p99_us'] / 1000:>10.2f}{r['errors']:>8}"
            f"{r['cpu_us']:>12.0f}"
        )
    print(f"webhook / bare: {ratio:.0%}")
    print(f"callbacks acknowledged: {hook['requests']} (incl. re-deliveries, 1 in {args.dup_every})")
    print(f"distinct events sent: {low}–{high}; stored: {stored}; lost: {lost if lost is not None else 'n/a (errors)'}")
    print(
        f"queue drained by {args.queue_workers} workers, WeCom at {args.wecom_latency}, in {drained:.1f}s "
        f"({done / drained:.0f} events/s): "
        f"done {done}, done on the first attempt {once}, not done {failed}, customers {customers}, "
        f"externalcontact/get calls {api_reads}"
    )
    # Each event reads its customer at most once when it is processed (a batch reads a customer once for
    # all its events); more reads than events done means an event was worked on twice (or failed once and
    # was retried, which the "not done" count shows).
    twice = api_reads - done
    print(f"processed twice: {max(twice, 0)}")
    ok = hook["errors"] == 0 and lost == 0 and failed == 0 and once == done and twice == 0 and stored <= high
    print("RESULT:", "ok" if ok else "PROBLEM")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
