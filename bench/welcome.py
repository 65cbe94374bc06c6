"""Welcome benchmark: a burst of customer adds and how fast each gets its welcome message.

    make bench-welcome     (or: .venv/bin/python bench/welcome.py --help)

1. A fake WeCom runs in its own process (gevent) with N customers who have just scanned a channel code,
   each with a welcome code; a channel with a welcome message waits in Siyu's database.
2. Siyu runs as deployed: gunicorn (gevent) web workers and --queue-workers worker processes.
3. A driver process sends the N signed, encrypted add_external_contact callbacks at --rate per second
   (open loop: on schedule whether or not earlier ones were answered), plus WeCom-style re-deliveries.
4. When the welcomes are done it prints, per welcome code, the time from the callback's receipt (when the
   webhook stored it) to the fake WeCom accepting send_welcome_msg: p50/p99/max, how many within 20 s, and
   how many codes were sent to more than once (the target: p99 ≤ 1 s, 100 % within 20 s, zero duplicates).

Needs PostgreSQL and Redis; it drops and recreates the schema of the database it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.callbacks import (  # noqa: E402 - after sys.path.insert: run as a script
    BIN,
    bench_env,
    free_port,
    gunicorn,
    query_one,
    reset_database,
    stop,
    wait_for_app,
    wait_for_port,
)
from bench.latency import Latency, add_latency_option, latencies  # noqa: E402 - after sys.path.insert: run as a script

WELCOME_TTL = 20.0


def serve_fake(port: int, customers: int, out: Path, settings_env: dict[str, str], latency: str = "0") -> None:
    """Child process: the fake WeCom with ``customers`` fresh adds, served by gevent, answering each API call
    after ``latency`` (bench/latency.py)."""
    from gevent import monkey

    monkey.patch_all()
    from gevent.pywsgi import WSGIServer

    from bot.config import Settings
    from bot.sandbox import corp_for, create_fake_wecom, simulator_for

    settings = Settings.from_env(settings_env)
    corp = corp_for(settings)
    # The 20 s are judged by the benchmark from its own timestamps; codes here never expire by the clock.
    corp.welcome_ttl = 3600
    sim = simulator_for(settings, corp, "http://unused/", seed=3)
    sim.seed_corp(stores=4, staff_per_store=5)
    staff = sorted(corp.users)
    with out.open("w") as f:
        for n in range(customers):
            userid = staff[n % len(staff)]
            contact, code = corp.add_contact(sim.person_name(), 1, userid, state="bench-welcome")
            f.write(json.dumps([contact.external_userid, userid, code]) + "\n")
    from bench.latency import parse_latency, with_latency

    app = with_latency(create_fake_wecom(corp), parse_latency(latency))
    WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()


def signed_adds(env: dict[str, str], contacts_file: Path) -> list[tuple[str, str, str]]:
    """(welcome code, path with its signed query, encrypted body) of each add the fake WeCom prepared."""
    from bot.config import Settings
    from bot.sandbox import corp_for, simulator_for
    from bot.sandbox.simulator import event_xml

    settings = Settings.from_env(env)
    sim = simulator_for(settings, corp_for(settings), "http://unused/")
    out = []
    for line in contacts_file.read_text().splitlines():
        external_userid, userid, code = json.loads(line)
        plaintext = event_xml(
            settings.corp_id,
            "change_external_contact",
            ChangeType="add_external_contact",
            UserID=userid,
            ExternalUserID=external_userid,
            State="bench-welcome",
            WelcomeCode=code,
        )
        body, query = sim.envelope(plaintext)
        out.append((code, "/wecom/callback?" + "&".join(f"{k}={v}" for k, v in query.items()), body))
    return out


def drive(url: str, requests_file: Path, rate: float, connections: int) -> None:
    """Child process: POST each line of ``requests_file`` at its scheduled time; prints a JSON summary."""
    from gevent import monkey

    monkey.patch_all()
    import http.client

    import gevent

    lines = requests_file.read_text(encoding="utf-8").splitlines()
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic() + 0.5
    statuses: dict[int, int] = {}

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        for i in range(k, len(lines), connections):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            path, body = lines[i].split("\t", 1)
            try:
                conn.request("POST", path, body=body.encode(), headers={"Content-Type": "text/xml"})
                res = conn.getresponse()
                res.read()
                statuses[res.status] = statuses.get(res.status, 0) + 1
            except OSError:
                statuses[0] = statuses.get(0, 0) + 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.close()

    gevent.joinall([gevent.spawn(worker, k) for k in range(connections)])
    print(json.dumps({"statuses": statuses, "seconds": time.monotonic() - start}))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def profile(directory: str | None, processes: dict[str, subprocess.Popen], seconds: float) -> list[subprocess.Popen]:
    """py-spy (pip install py-spy; not a dependency of Siyu) sampling each named process (and its children)
    for ``seconds`` into DIR/NAME.txt, collapsed stacks to read."""
    if not directory:
        return []
    Path(directory).mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                str(BIN / "py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "100",
                "--nonblocking",
                "--gil",
                "--subprocesses",
                "--duration",
                str(int(seconds)),
                "-o",
                str(Path(directory) / f"{name}.txt"),
                "--pid",
                str(proc.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for name, proc in processes.items()
    ]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def run(args: argparse.Namespace, rate: float, latency_value: Latency) -> dict:
    """One burst of adds at ``rate`` per second with the fake WeCom answering at ``latency_value``."""
    sandbox_port = free_port()
    env = bench_env(args.database_url, args.redis_url, sandbox_port)
    from bot import create_app
    from bot.extensions import db
    from bot.models import Channel, WelcomeMessage

    latency = str(latency_value)

    total = int(rate * args.seconds)
    tmp = Path(tempfile.mkdtemp(prefix="siyu-welcome-"))
    print(f"preparing {total} adds, a fake WeCom and Siyu (PostgreSQL + Redis) …", flush=True)
    reset_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    app = create_app({"database_url": args.database_url, "redis_url": args.redis_url})
    with app.app_context():
        channel = Channel(name="欢迎语压测", state="bench-welcome", config_id="bench", routed_userids=[])
        channel.welcomes = [WelcomeMessage(text=args.text)]
        db.session.add(channel)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()

    contacts_file = tmp / "contacts.jsonl"
    fake = subprocess.Popen(
        [
            sys.executable, __file__, "--serve-fake", str(sandbox_port), str(total), str(contacts_file),
            f"{latency_value.fixed * 1000:g}ms±{latency_value.jitter * 1000:g}ms",
        ],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    web_port = free_port()
    web = gunicorn("wsgi:app", web_port, env, args.web_workers, "gevent", 1)
    flask = str(BIN / "flask")
    nice = ["nice", "-n", str(args.queue_workers_nice)] if args.queue_workers_nice else []
    commands = [[flask, "worker", "--welcomes-only"]] * args.welcome_workers + [
        [*nice, flask, "worker"]
    ] * args.queue_workers
    logs = [(tmp / f"worker-{n}.log").open("w") for n in range(len(commands))]
    workers = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        for cmd, out in zip(commands, logs, strict=True)
    ]
    spies: list[subprocess.Popen] = []
    try:
        wait_for_port(sandbox_port, timeout=120)
        wait_for_app(web_port)
        rng = random.Random(3)
        lines = []
        for n, (_, path, body) in enumerate(signed_adds(env, contacts_file)):
            lines.append(path + "\t" + body)
            if args.dup_every and n % args.dup_every == args.dup_every - 1:
                lines.append(lines[max(0, len(lines) - 1 - rng.randrange(1, 20))])  # a re-delivery
        requests_file = tmp / "requests.tsv"
        requests_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        time.sleep(2)
        spies = profile(args.py_spy, {"web": web, "welcome": workers[0], "queue": workers[-1]}, args.seconds + 15)
        rate = rate * len(lines) / total  # re-deliveries ride on top of the add rate
        print(f"sending {len(lines)} callbacks ({total} adds) at {rate:.0f}/s for {args.seconds:.0f}s …", flush=True)
        driven = subprocess.run(
            [
                sys.executable,
                __file__,
                "--drive",
                f"http://127.0.0.1:{web_port}",
                str(requests_file),
                "--rate",
                str(rate),
                "--connections",
                str(args.connections),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        sent = json.loads(driven.stdout.strip().splitlines()[-1])
        print(f"driver: {sent['statuses']} in {sent['seconds']:.1f}s", flush=True)
        deadline = time.monotonic() + args.drain_timeout
        finished = 0
        while time.monotonic() < deadline:
            (finished,) = query_one(args.database_url, "SELECT count(*) FROM welcome_sends WHERE status <> 'sending'")
            if finished >= total:
                break
            time.sleep(1)
        log = requests.get(f"http://127.0.0.1:{sandbox_port}/sandbox/welcome-log", timeout=30).json()
        cpu = {
            "web": sum(cpu_seconds(p) for p in [web.pid, *children(web.pid)]),
            "welcome workers": sum(cpu_seconds(w.pid) for w in workers[: args.welcome_workers]),
            "queue workers": sum(cpu_seconds(w.pid) for w in workers[args.welcome_workers :]),
            "fake WeCom": cpu_seconds(fake.pid),
        }
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled on an interrupt
            spy.wait(timeout=60)
        for n, w in enumerate(workers):
            if w.poll() is not None:
                print(f"worker {n} ({' '.join(commands[n])}) exited with {w.returncode}: see {tmp}/worker-{n}.log")
            stop(w)
        for handle in logs:
            handle.close()
        stop(web)
        stop(fake)

    received: dict[str, float] = {}
    plain = query_one(
        args.database_url,
        "SELECT json_agg(json_build_array(plaintext, extract(epoch from received_at))) FROM callback_events",
    )[0]
    for plaintext, at in plain or []:
        match = re.search(r"<WelcomeCode><!\[CDATA\[(.*?)\]\]></WelcomeCode>", plaintext)
        if match:
            received[match.group(1)] = float(at)
    latencies = [log["sent_at"][c] - t for c, t in received.items() if c in log["sent_at"]]
    statuses = dict(
        query_one(
            args.database_url,
            "SELECT coalesce(json_agg(json_build_array(status, n)), '[]') FROM "
            "(SELECT status, count(*) AS n FROM welcome_sends GROUP BY status) s",
        )[0]
    )
    within = sum(1 for x in latencies if x <= WELCOME_TTL)
    duplicates = sum(1 for n in log["attempts"].values() if n > 1)
    print()
    print(
        f"machine: {os.cpu_count()} cores · gunicorn {args.web_workers} gevent workers · "
        f"{args.welcome_workers} welcome workers + {args.queue_workers} queue workers (nice {args.queue_workers_nice})"
        f" · fake WeCom in its own process, answering at {latency}"
    )
    print(f"adds: {total} at {rate:.0f}/s for {args.seconds:.0f}s (+ re-deliveries, 1 in {args.dup_every})")
    print(f"callbacks stored: {len(received)}; welcome records: {statuses}")
    if latencies:
        print(
            "receipt → send_welcome_msg: "
            f"p50 {percentile(latencies, 50) * 1000:.0f} ms · p99 {percentile(latencies, 99) * 1000:.0f} ms · "
            f"max {max(latencies) * 1000:.0f} ms"
        )
    print(f"sent within {WELCOME_TTL:.0f} s: {within} of {total} ({within / total:.1%})")
    print(f"codes sent to more than once: {duplicates}")
    print("CPU seconds until the welcomes were done: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    print("CPU per add (ms): " + ", ".join(f"{k} {v / total * 1000:.2f}" for k, v in cpu.items()))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ok = within == total and duplicates == 0 and latencies and percentile(latencies, 99) <= 1.0
    print("RESULT:", "ok" if ok else "PROBLEM (see the targets above)", flush=True)
    p99 = percentile(latencies, 99) if latencies else float("inf")
    return {"rate": rate, "latency": latency, "ok": bool(ok), "p99": p99, "within": within, "total": total}


def find_rate(args: argparse.Namespace, latency: Latency, first: dict) -> float | None:
    """The highest rate, in steps of 50 adds/s, at which p99 ≤ 1 s: up from --rate while it holds (to
    --find-rate-max), or down from it until it does. None if not even 50/s."""
    rate, ok = args.rate, first["ok"]
    if ok:
        while rate + 50 <= args.find_rate_max and run(args, rate + 50, latency)["ok"]:
            rate += 50
        return rate
    while rate > 50:
        rate -= 50
        if run(args, rate, latency)["ok"]:
            return rate
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--rate", type=float, default=300, help="adds per second (the target: p99 ≤ 1 s at 300)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the burst")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--welcome-workers", type=int, default=2, help="workers reading only the welcome queue")
    parser.add_argument("--queue-workers", type=int, default=2, help="workers reading every queue")
    parser.add_argument(
        "--queue-workers-nice", type=int, default=10, help="their scheduling niceness: welcomes get the CPU first"
    )
    parser.add_argument("--connections", type=int, default=32, help="driver connections")
    parser.add_argument("--dup-every", type=int, default=20, help="every Nth callback is re-delivered")
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument(
        "--text",
        default="{customer_name}您好，我是{store_name}的{staff_name}。",
        help="the welcome text; without {customer_name} no externalcontact/get is needed before the send",
    )
    parser.add_argument(
        "--find-rate",
        action="store_true",
        help="also find the highest rate (in steps of 50 from --rate, up or down) at which p99 ≤ 1 s, at each latency",
    )
    parser.add_argument("--find-rate-max", type=float, default=600, help="where --find-rate stops looking upwards")
    parser.add_argument("--py-spy", metavar="DIR", help="py-spy the web, a welcome and a queue worker into DIR")
    add_latency_option(parser)
    parser.add_argument(
        "--serve-fake", nargs=4, metavar=("PORT", "CUSTOMERS", "OUT", "LATENCY"), help=argparse.SUPPRESS
    )
    parser.add_argument("--drive", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    sandbox_port = free_port()
    env = bench_env(args.database_url, args.redis_url, sandbox_port)
    if args.serve_fake:
        port, customers, out, latency = args.serve_fake
        serve_fake(int(port), int(customers), Path(out), env, latency)
        return 0
    if args.drive:
        drive(args.drive[0], Path(args.drive[1]), args.rate, args.connections)
        return 0

    results = []
    for latency in latencies(args.wecom_latency):
        result = run(args, args.rate, latency)
        results.append(result)
        if args.find_rate:
            results.append({**result, "highest": find_rate(args, latency, result)})
    print()
    for r in results:
        if "highest" in r:
            found = f"{r['highest']:.0f} adds/s" if r["highest"] else "none ≥ 50 adds/s"
            print(f"[WeCom at {r['latency']}] the highest rate with p99 ≤ 1 s: {found}")
        else:
            print(
                f"[WeCom at {r['latency']}] {r['rate']:.0f} adds/s: p99 {r['p99'] * 1000:.0f} ms, "
                f"within 20 s {r['within']} of {r['total']}, {'ok' if r['ok'] else 'PROBLEM'}"
            )
    return 0 if all(r["ok"] for r in results if "highest" not in r) else 1


if __name__ == "__main__":
    sys.exit(main())
