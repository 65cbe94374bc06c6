"""Drills: Siyu as deployed (gunicorn, queue workers, a welcome worker, a scheduler) under load and faults.

    .venv/bin/python bench/drills.py NAME [--adds N --rate R]      (make drills: every one in turn)

NAME is one of:
  load              the callback benchmark (bench/callbacks.py) with 2 and with 4 web processes, 2 workers
  worker-kill       kill -9 the welcome worker and a queue worker in the middle of a burst of adds
  send-kill         kill -9 the workers while a mass send to every customer waits for WeCom's late answer
  redis-restart     restart Redis (it keeps nothing on disk here: every queued job is lost) during a burst
  postgres-restart  restart PostgreSQL during a burst (the webhook answers 503; WeCom re-sends)
  wecom-outage      WeCom answers 45009, then -1, then nothing (timeouts) to every call, a minute each
  token-storm       every access token expires, five times, while every process is calling WeCom
  fuzz              random and mutated envelopes at the webhook, then schemathesis against the JSON API

Each adds drill sends signed add_external_contact callbacks (a channel with a welcome message) the way
WeCom does: a callback not answered 200 is sent again, up to three more times. After the fault it waits for
the queue to drain and prints what it measured: callbacks acknowledged, events stored and their statuses
(lost = acknowledged but not stored; every event must end done), welcomes accepted by the fake WeCom,
codes Siyu tried more than once, codes accepted more than once (a duplicate message), welcomes later than
20 s (their code would have expired at WeCom), and what the fault cost. RESULT: ok means zero lost events,
zero duplicate welcomes and every event done.

Needs PostgreSQL and Redis (the redis-restart and postgres-restart drills restart the machine's own
servers: `service redis-server restart`, `pg_ctlcluster`); the scratch database is dropped and recreated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.callbacks import BIN, bench_env, free_port, gunicorn, query_one, reset_database, stop, wait_for_port  # noqa: E402
from bench.welcome import signed_adds  # noqa: E402

WELCOME_TTL = 20.0
WECOM_RESENDS = (1.0, 2.0, 4.0)  # WeCom sends again when not answered 200 (spaced here to keep drills short)


class Cluster:
    """One machine's worth of Siyu against a fake WeCom in its own process, on scratch PostgreSQL + Redis."""

    def __init__(self, args: argparse.Namespace, web_workers: int = 2, extra_env: dict[str, str] | None = None):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="siyu-drill-"))
        self.sandbox_port = free_port()
        self.web_port = free_port()
        self.env = {**bench_env(args.database_url, args.redis_url, self.sandbox_port), **(extra_env or {})}
        self.web_workers = web_workers
        self.procs: dict[str, subprocess.Popen] = {}
        self.fake_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"

    # -- processes --------------------------------------------------------------------------------

    def start(self, adds: int) -> None:
        from bot import create_app
        from bot.extensions import db
        from bot.models import Channel, WelcomeMessage

        reset_database(self.args.database_url)
        redis.Redis.from_url(self.args.redis_url).flushdb()
        subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        app = create_app({"database_url": self.args.database_url, "redis_url": self.args.redis_url})
        with app.app_context():
            channel = Channel(name="演练", state="bench-welcome", config_id="drill", routed_userids=[])
            channel.welcomes = [WelcomeMessage(text="您好，我是{store_name}的{staff_name}。")]
            db.session.add(channel)
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        self.contacts = self.tmp / "contacts.jsonl"
        welcome_bench = str(ROOT / "bench" / "welcome.py")
        self._spawn(
            "fake",
            [sys.executable, welcome_bench, "--serve-fake", str(self.sandbox_port), str(adds), str(self.contacts)],
        )
        self.procs["web"] = gunicorn("wsgi:app", self.web_port, self.env, self.web_workers, "gevent", 1)
        self._spawn("welcome", [str(BIN / "flask"), "worker", "--welcomes-only"])
        self._spawn("worker-1", [str(BIN / "flask"), "worker"])
        self._spawn("worker-2", [str(BIN / "flask"), "worker"])
        self._spawn("scheduler", [str(BIN / "flask"), "scheduler"])
        wait_for_port(self.sandbox_port, timeout=120)
        wait_for_port(self.web_port)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = (self.tmp / f"{name}.log").open("a")
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, name: str, restart_after: float = 2.0) -> None:
        """kill -9, then start it again as systemd's Restart=always would."""
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(restart_after)
        self._spawn(name, [str(a) for a in proc.args])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                stop(proc)

    # -- load -------------------------------------------------------------------------------------

    def add_callbacks(self) -> list[tuple[str, str, str]]:
        """(welcome code, path with query, body) of each prepared add, signed and encrypted."""
        return signed_adds(self.env, self.contacts)

    def send_like_wecom(self, callbacks: list[tuple[str, str, str]], rate: float) -> dict[str, Any]:
        """POST each callback on schedule from 32 threads; anything but a 200 is sent again (WECOM_RESENDS).
        One in ten is also re-delivered after it was acknowledged, as WeCom does now and then."""
        start = time.monotonic() + 0.2
        answers: dict[str, int] = {}
        acked: set[str] = set()
        lock = threading.Lock()
        local = threading.local()

        def post(path: str, body: str) -> int:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            try:
                return session.post(self.web_url + path, data=body.encode(), timeout=5).status_code
            except requests.RequestException:
                local.session = None
                return 0

        def one(i: int) -> None:
            code, path, body = callbacks[i]
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            for attempt in range(len(WECOM_RESENDS) + 1):
                status = post(path, body)
                with lock:
                    answers[str(status)] = answers.get(str(status), 0) + 1
                if status == 200:
                    with lock:
                        acked.add(code)
                    if i % 10 == 0:
                        post(path, body)  # a re-delivery of an acknowledged callback
                    return
                if attempt < len(WECOM_RESENDS):
                    time.sleep(WECOM_RESENDS[attempt])

        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(one, range(len(callbacks))))
        return {"answers": answers, "acknowledged": acked, "seconds": time.monotonic() - start}

    # -- outcome ----------------------------------------------------------------------------------

    def drained(self, expected: int, timeout: float) -> float:
        """Seconds until every stored event is done (or skipped), at most ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                (stored, open_) = query_one(
                    self.args.database_url,
                    "SELECT count(*), count(*) FILTER (WHERE status NOT IN ('done', 'skipped')) FROM callback_events",
                )
                if stored >= expected and open_ == 0:
                    break
            except Exception as exc:  # the database may be restarting
                print(f"  (waiting: {type(exc).__name__})", flush=True)
            time.sleep(1)
        return time.monotonic() - started

    def _by_status(self, table: str) -> dict[str, int]:
        sql = f"SELECT coalesce(json_object_agg(status, n), '{{}}') FROM (SELECT status, count(*) n FROM {table} GROUP BY status) s"  # noqa: E501, S608 - our own table names
        (counts,) = query_one(self.args.database_url, sql)
        return dict(counts)

    def outcome(self, callbacks: list[tuple[str, str, str]], sent: dict[str, Any]) -> dict[str, Any]:
        statuses = self._by_status("callback_events")
        (received,) = query_one(
            self.args.database_url,
            "SELECT coalesce(json_agg(json_build_array(plaintext, extract(epoch from received_at))), '[]') "
            "FROM callback_events",
        )
        stored_at = {}
        for plaintext, at in received:
            match = re.search(r"<WelcomeCode><!\[CDATA\[(.*?)\]\]></WelcomeCode>", plaintext)
            if match:
                stored_at[match.group(1)] = float(at)
        welcomes = self._by_status("welcome_sends")
        log = requests.get(self.fake_url + "/sandbox/welcome-log", timeout=30).json()
        state = requests.get(self.fake_url + "/sandbox/state", timeout=30).json()
        codes = {code for code, _, _ in callbacks}
        late = sum(1 for c, t in stored_at.items() if c in log["sent_at"] and log["sent_at"][c] - t > WELCOME_TTL)
        return {
            "adds": len(callbacks),
            "answers": sent["answers"],
            "acknowledged": len(sent["acknowledged"]),
            "lost": len(sent["acknowledged"] - stored_at.keys()),
            "events": statuses,
            "welcome records": welcomes,
            "welcomed": sum(1 for c in codes if c in log["sent_at"]),
            "tried more than once": sum(1 for c in codes if log["attempts"].get(c, 0) > 1),
            "accepted more than once": state["welcomes_sent"] - len(log["sent_at"]),
            "later than 20 s": late,
            "token fetches": state["token_fetches"],
        }


def report(name: str, measured: dict[str, Any], extra: dict[str, Any] | None = None) -> bool:
    extra = dict(extra or {})
    drill_ok = extra.pop("_ok", True)  # a drill's own condition (token-storm: one fetch per expiry)
    print(f"\n== drill {name}")
    for key, value in {**measured, **(extra or {})}.items():
        print(f"{key:>26}: {value}")
    events = measured.get("events", {})
    ok = (
        measured.get("lost", 0) == 0
        and measured.get("accepted more than once", 0) == 0
        and set(events) <= {"done", "skipped"}
        and sum(events.values()) >= measured.get("acknowledged", 0)
    )
    ok = ok and drill_ok
    print("RESULT:", "ok" if ok else "PROBLEM")
    return ok


def adds_drill(args: argparse.Namespace, name: str, fault: Any, *, drain: float = 300, **cluster: Any) -> bool:
    """A burst of adds with ``fault(cluster)`` run in a thread ``args.fault_at`` seconds in."""
    c = Cluster(args, **cluster)
    try:
        print(
            f"drill {name}: starting Siyu and a fake WeCom with {args.adds} customers who scanned a code …", flush=True
        )
        c.start(args.adds)
        callbacks = c.add_callbacks()
        extra: dict[str, Any] = {}

        def run_fault() -> None:
            time.sleep(args.fault_at)
            started = time.monotonic()
            extra.update(fault(c) or {})
            extra["fault took s"] = round(time.monotonic() - started, 1)

        thread = threading.Thread(target=run_fault)
        thread.start()
        print(
            f"sending {len(callbacks)} adds at {args.rate:.0f}/s; the fault starts after {args.fault_at:.0f} s …",
            flush=True,
        )
        sent = c.send_like_wecom(callbacks, args.rate)
        thread.join()
        extra["drained after s"] = round(c.drained(len(sent["acknowledged"]), drain), 1)
        return report(name, c.outcome(callbacks, sent), extra)
    finally:
        c.stop()
        print(f"(process logs in {c.tmp})")


# -- the drills -------------------------------------------------------------------------------------


def worker_kill(args: argparse.Namespace) -> bool:
    def fault(c: Cluster) -> dict[str, Any]:
        c.kill("welcome")
        c.kill("worker-1")
        return {"killed": "welcome worker and worker-1 (kill -9), restarted after 2 s"}

    return adds_drill(args, "worker-kill", fault)


def redis_restart(args: argparse.Namespace) -> bool:
    def fault(c: Cluster) -> dict[str, Any]:
        client = redis.Redis.from_url(args.redis_url)
        before = client.dbsize()
        restart_redis(client, down=args.down)
        return {"redis keys before restart": before, "after": client.dbsize(), "down for s": args.down}

    return adds_drill(args, "redis-restart", fault)


def restart_redis(client: redis.Redis, down: float) -> None:
    """Stop the machine's Redis (keeping nothing: the worst case) and start it again as it was."""
    config = {k: client.config_get(k)[k] for k in ("bind", "port", "dir", "appendonly")}
    with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it goes
        client.shutdown(nosave=True)
    time.sleep(down)
    subprocess.run(
        [
            "redis-server",
            "--bind",
            *config["bind"].split(),
            "--port",
            config["port"],
            "--dir",
            config["dir"],
            "--save",
            "",
            "--appendonly",
            config["appendonly"],
            "--daemonize",
            "yes",
        ],
        check=True,
        capture_output=True,
    )
    for _ in range(50):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("Redis did not come back")


def postgres_restart(args: argparse.Namespace) -> bool:
    def fault(c: Cluster) -> dict[str, Any]:
        version, cluster = _pg_cluster()
        subprocess.run(["pg_ctlcluster", version, cluster, "restart", "-m", "fast"], check=True, capture_output=True)
        return {"restarted": f"PostgreSQL {version}/{cluster}"}

    return adds_drill(args, "postgres-restart", fault)


def send_kill(args: argparse.Namespace) -> bool:
    """The customers of a burst of adds get a mass send; WeCom makes the first task but answers late, and
    both queue workers are killed (-9) while the dispatcher waits for that answer."""
    c = Cluster(args)
    try:
        print(f"drill send-kill: {args.adds} customers arrive first …", flush=True)
        c.start(args.adds)
        callbacks = c.add_callbacks()
        sent = c.send_like_wecom(callbacks, args.rate)
        c.drained(len(sent["acknowledged"]), 300)
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {_api_token(c)}"
        externals = [json.loads(line)[0] for line in c.contacts.read_text().splitlines()]
        requests.post(
            c.fake_url + "/sandbox/faults",
            json={"endpoint": "externalcontact/add_msg_template", "errcode": "late", "times": 1},
            timeout=5,
        ).raise_for_status()
        res = api.post(
            c.web_url + "/api/v1/sends",
            json={
                "name": "演练群发",
                "text": "会员日全场 8 折",
                "target": {"external_userids": externals},
                "approve": True,
            },
            timeout=120,
        )
        res.raise_for_status()
        send = res.json()
        print(f"send {send['id']}: {send['preview']}; killing the queue workers in 3 s …", flush=True)
        time.sleep(3)
        c.kill("worker-1", restart_after=0)
        c.kill("worker-2")
        started = time.monotonic()
        status = send["status"]
        while time.monotonic() - started < 600 and status not in ("tracking", "done", "failed"):
            time.sleep(2)
            status = api.get(f"{c.web_url}/api/v1/sends/{send['id']}", timeout=30).json()["status"]
        state = requests.get(c.fake_url + "/sandbox/state", timeout=30).json()
        chunks = c._by_status("send_chunks")
        measured = {
            "customers": len(externals),
            "send": status,
            "chunks": chunks,
            "WeCom tasks made": state["mass_tasks"],
            "recipients in WeCom's tasks": state["mass_recipients"],
            "distinct recipients": state["mass_unique_recipients"],
            "finished after the kill s": round(time.monotonic() - started, 1),
        }
        ok = (
            status == "tracking"
            and state["mass_recipients"] == state["mass_unique_recipients"] == send["preview"]["recipients"]
            and state["mass_tasks"] == sum(chunks.values()) == chunks.get("created")
        )
        return report("send-kill", {}, {**measured, "_ok": ok})
    finally:
        c.stop()
        print(f"(process logs in {c.tmp})")


def _pg_cluster() -> tuple[str, str]:
    out = subprocess.run(["pg_lsclusters", "-h"], check=True, capture_output=True, text=True).stdout.split()
    return out[0], out[1]


def wecom_outage(args: argparse.Namespace) -> bool:
    ok = True
    for errcode in ("45009", "-1", "timeout"):

        def fault(c: Cluster, errcode: str = errcode) -> dict[str, Any]:
            code: Any = errcode if errcode == "timeout" else int(errcode)
            requests.post(
                c.fake_url + "/sandbox/faults",
                json={"endpoint": "*", "errcode": code, "seconds": args.outage},
                timeout=5,
            ).raise_for_status()
            time.sleep(args.outage)
            return {"outage": f"every call answered {errcode} for {args.outage:.0f} s"}

        # The client gives up on a call after WECOM_TIMEOUT; the fake answers a timed-out call after 15 s.
        ok &= adds_drill(args, f"wecom-outage {errcode}", fault, drain=900, extra_env={"WECOM_TIMEOUT": "2"})
    return ok


def token_storm(args: argparse.Namespace) -> bool:
    expiries = 5

    def fault(c: Cluster) -> dict[str, Any]:
        before = requests.get(c.fake_url + "/sandbox/state", timeout=5).json()["token_fetches"]
        for _ in range(expiries):
            requests.post(c.fake_url + "/sandbox/expire-tokens", timeout=5).raise_for_status()
            time.sleep(2)
        time.sleep(2)
        after = requests.get(c.fake_url + "/sandbox/state", timeout=5).json()["token_fetches"]
        return {
            "expiries": expiries,
            "token fetches during the storm": after - before,
            "_ok": after - before == expiries,
        }

    return adds_drill(args, "token-storm", fault)


def load(args: argparse.Namespace) -> bool:
    rows = []
    for workers in (2, 4):
        print(f"drill load: the callback benchmark with {workers} web processes and 2 workers …", flush=True)
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "callbacks.py"),
                "--database-url",
                args.database_url,
                "--redis-url",
                args.redis_url,
                "--web-workers",
                str(workers),
                "--queue-workers",
                "2",
                "--duration",
                str(args.duration),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        print(out)
        hook = re.search(r"^Siyu webhook\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)", out, re.M)
        lost = re.search(r"lost: (\S+)", out)
        twice = re.search(r"processed twice: (\d+)", out)
        rows.append((workers, hook.groups() if hook else None, lost and lost.group(1), twice and twice.group(1)))
    print("\n== drill load")
    print(f"{'web processes':>14}{'callbacks/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'lost':>6}{'twice':>7}")
    for workers, hook, lost, twice in rows:
        if hook:
            print(f"{workers:>14}{hook[0]:>14}{hook[1]:>10}{hook[2]:>10}{hook[3]:>8}{lost:>6}{twice:>7}")
        else:
            print(f"{workers:>14}  (the benchmark failed: see its output above)")
    if all(r[1] for r in rows):
        print(f"4 processes / 2 processes: {int(rows[1][1][0]) / int(rows[0][1][0]):.2f}× on {os.cpu_count()} cores")
    ok = all(r[1] and r[2] == "0" and r[3] == "0" for r in rows)
    print("RESULT:", "ok" if ok else "PROBLEM")
    return ok


def fuzz(args: argparse.Namespace) -> bool:
    c = Cluster(args)
    try:
        print("drill fuzz: starting Siyu …", flush=True)
        c.start(10)
        callbacks = c.add_callbacks()
        rng = random.Random(8)
        statuses: dict[int, int] = {}
        session = requests.Session()
        for n in range(args.fuzz_requests):
            code, path, body = rng.choice(callbacks)
            kind = n % 4
            raw = body.encode()
            if kind == 0:  # random bytes
                raw = rng.randbytes(rng.randrange(0, 4096))
            elif kind == 1:  # one byte flipped
                i = rng.randrange(len(raw))
                raw = raw[:i] + bytes([raw[i] ^ rng.randrange(1, 256)]) + raw[i + 1 :]
            elif kind == 2:  # truncated or extended
                raw = (
                    raw[: rng.randrange(len(raw))] if rng.random() < 0.5 else raw + rng.randbytes(rng.randrange(1, 200))
                )
            else:  # a query parameter changed or dropped
                key = rng.choice(["msg_signature", "timestamp", "nonce"])
                path = re.sub(rf"{key}=[^&]*", f"{key}={rng.randbytes(8).hex()}" if rng.random() < 0.7 else "", path)
            status = session.post(c.web_url + path, data=raw, timeout=10).status_code
            statuses[status] = statuses.get(status, 0) + 1
        (stored,) = query_one(args.database_url, "SELECT count(*) FROM callback_events")
        webhook_ok = not any(s >= 500 for s in statuses)
        print(
            f"\nwebhook: {args.fuzz_requests} mutated requests → {dict(sorted(statuses.items()))}; "
            f"events stored: {stored}"
        )

        token = _api_token(c)
        report_file = c.tmp / "schemathesis.txt"
        cmd = [
            str(BIN / "schemathesis"),
            "run",
            f"{c.web_url}/api/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "-c",
            "no_server_error",
            "--max-time",
            str(args.schemathesis_seconds),
            "--seed",
            "1",
            "--no-shrink",
        ]
        print(f"schemathesis against /api/v1/openapi.json for up to {args.schemathesis_seconds} s …", flush=True)
        hooks = {**c.env, "SCHEMATHESIS_HOOKS": "bench.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
        result = subprocess.run(cmd, cwd=ROOT, env=hooks, capture_output=True, text=True)
        report_file.write_text(result.stdout + result.stderr)
        cases = re.search(r"(\d+) generated, (.*)", result.stdout)
        operations = re.search(r"Tested: (\d+)", result.stdout)
        # The documented schema admitting what the API refuses: generated data that mostly gets a 400.
        rejecting = re.search(r"(\d+) operations mostly rejected generated data", result.stdout)
        print(
            f"schemathesis: {operations and operations.group(1)} operations, {cases and cases.group(0)}; "
            f"{rejecting.group(1) if rejecting else 0} mostly rejecting generated data; exit {result.returncode}"
        )
        return report(
            "fuzz",
            {},
            {
                "webhook answers": dict(sorted(statuses.items())),
                "webhook server errors": sum(n for s, n in statuses.items() if s >= 500),
                "API cases": cases.group(0) if cases else "?",
                "API operations mostly rejecting": rejecting.group(1) if rejecting else "0",
                "API server errors": "0" if result.returncode == 0 else f"see {report_file}",
                "_ok": webhook_ok and result.returncode == 0,
            },
        )
    finally:
        c.stop()
        print(f"(process logs in {c.tmp})")


def _api_token(c: Cluster) -> str:
    flask = str(BIN / "flask")
    subprocess.run(
        [flask, "create-admin", "drill", "--password", "drill-password-1"],
        cwd=ROOT,
        env=c.env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [flask, "create-api-token", "fuzz", "--user", "drill"],
        cwd=ROOT,
        env=c.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"(siyu_[A-Za-z0-9_-]+)", out)
    assert match, out
    return match.group(1)


DRILLS = {
    "load": load,
    "worker-kill": worker_kill,
    "send-kill": send_kill,
    "redis-restart": redis_restart,
    "postgres-restart": postgres_restart,
    "wecom-outage": wecom_outage,
    "token-storm": token_storm,
    "fuzz": fuzz,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drill", choices=[*DRILLS, "all"])
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/siyu_drill")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--adds", type=int, default=3000, help="customers adding a member during the burst")
    parser.add_argument("--rate", type=float, default=150, help="adds per second")
    parser.add_argument("--fault-at", type=float, default=5, help="seconds into the burst")
    parser.add_argument("--outage", type=float, default=60, help="seconds of each WeCom outage")
    parser.add_argument("--down", type=float, default=3, help="seconds Redis stays down (redis-restart)")
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk per run (load)")
    parser.add_argument("--fuzz-requests", type=int, default=5000)
    parser.add_argument("--schemathesis-seconds", type=int, default=300)
    args = parser.parse_args()
    names = list(DRILLS) if args.drill == "all" else [args.drill]
    results = {name: DRILLS[name](args) for name in names}
    if len(results) > 1:
        print("\n" + "\n".join(f"{name:>18}: {'ok' if ok else 'PROBLEM'}" for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
