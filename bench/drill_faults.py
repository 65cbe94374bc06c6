"""The fault drills: workers killed, Redis and PostgreSQL restarted, WeCom down, every access token expired."""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import time
from typing import Any

import redis
import requests

from bench.drill_cluster import Cluster, adds_drill, api_token, report


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
        version, cluster = pg_cluster()
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
        api.headers["Authorization"] = f"Bearer {api_token(c)}"
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
        chunks = c.by_status("send_chunks")
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


def pg_cluster() -> tuple[str, str]:
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
