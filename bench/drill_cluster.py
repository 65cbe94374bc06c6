"""What the drills share: a Cluster (Siyu as deployed against a fake WeCom, on scratch PostgreSQL + Redis),
the burst of adds sent the way WeCom sends them, and the report of what a drill measured."""

from __future__ import annotations

import argparse
import os
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

from bench.callbacks import BIN, ROOT, bench_env, free_port, gunicorn, query_one, reset_database, stop, wait_for_port
from bench.welcome import signed_adds

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
            [
                sys.executable,
                welcome_bench,
                "--serve-fake",
                str(self.sandbox_port),
                str(adds),
                str(self.contacts),
                getattr(self.args, "wecom_latency", "0"),
            ],  # fmt: skip
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

    def by_status(self, table: str) -> dict[str, int]:
        sql = (
            f"SELECT coalesce(json_object_agg(status, n), '{{}}') "  # noqa: S608 - our own table names
            f"FROM (SELECT status, count(*) n FROM {table} GROUP BY status) s"
        )
        (counts,) = query_one(self.args.database_url, sql)
        return dict(counts)

    def outcome(self, callbacks: list[tuple[str, str, str]], sent: dict[str, Any]) -> dict[str, Any]:
        statuses = self.by_status("callback_events")
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
        welcomes = self.by_status("welcome_sends")
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


def api_token(c: Cluster) -> str:
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
