"""The handover drill: five leavers' customers and groups handed over while the queue workers are killed.

A fake WeCom (a child process) has five stores, a member of each who resigns with ``--customers`` customers
between them and ``--groups`` groups. Siyu (gunicorn, two queue workers) is asked through the JSON API for
one handover per leaver, to their store's manager; as soon as WeCom has been asked for some customers and
others wait their turn, both queue workers are killed (-9) and started again. This process plays the
scheduler's 15-minute follow-up every few seconds (resuming a handover whose run died, once its lock
lapses, and reading transfer_result), and once every customer has been asked, lets WeCom's 24 hours pass
at once — most taken over, some refused, some at the receiver's limit — with no callback at all, so the
follow-up alone must bring each customer to its final status.

It prints the calls made, the customers in each final status, duplicates (a customer WeCom accepted twice;
must be 0) and stranded (a leaver's customer or group that no transfer reached, or an item not final; must
be 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402 - after sys.path.insert: run as a script

from bench.callbacks import BIN, gunicorn, query_one, wait_for_port  # noqa: E402 - after sys.path.insert: run as a script
from bench.drill_cluster import Cluster, api_token, report  # noqa: E402 - after sys.path.insert: run as a script

LEAVERS = 5
REFUSE_EVERY = 40  # one customer in 40 refuses the new member
LIMIT_EVERY = 97  # one in 97 finds the receiver at their customer limit
ENDPOINTS = (
    "externalcontact/get_unassigned_list",
    "externalcontact/resigned/transfer_customer",
    "externalcontact/resigned/transfer_result",
    "externalcontact/groupchat/transfer",
)


def serve_fake(port: int, customers: int, groups: int, settings_env: dict[str, str]) -> None:
    """Child process: the fake WeCom with the leavers, served by gevent, and the drill's own routes."""
    from gevent import monkey

    monkey.patch_all()
    from flask import jsonify
    from gevent.pywsgi import WSGIServer

    from bot.config import Settings
    from bot.sandbox import corp_for, create_fake_wecom, simulator_for
    from bot.sandbox.handover import ledger, resign

    settings = Settings.from_env(settings_env)
    corp = corp_for(settings)
    sim = simulator_for(settings, corp, "http://unused/", seed=5)
    sim.seed_corp(stores=LEAVERS, staff_per_store=3)
    stores = sorted({u["department"][0] for u in corp.users.values()})
    pairs = {f"staff{d:02d}02": f"staff{d:02d}01" for d in stores}  # leaver → the store's manager
    leavers = sorted(pairs)
    owned: dict[str, list[str]] = {u: [] for u in leavers}
    for n in range(customers):
        userid = leavers[n % LEAVERS]
        contact, _ = corp.add_contact(sim.person_name(), 1 + n % 2, userid)
        owned[userid].append(contact.external_userid)
    for n in range(groups):
        userid = leavers[n % LEAVERS]
        corp.create_group(userid, f"老客群{n}", owned[userid][n // LEAVERS :: 997][:3])
    fake = create_fake_wecom(corp)

    @fake.post("/drill/resign")
    def drill_resign() -> Any:
        """The five leave (after Siyu has known them as members)."""
        for userid in leavers:
            resign(corp, userid)
        return jsonify(leavers)

    @fake.get("/drill/leavers")
    def drill_leavers() -> Any:
        return jsonify(pairs)

    @fake.post("/drill/take-effect")
    def drill_take_effect() -> Any:
        """The 24 hours pass for every waiting transfer, and WeCom calls back nothing (all lost)."""
        moved = Counter()
        with corp.lock:
            for n, record in enumerate(sorted(corp.transfers.values(), key=lambda r: r["external_userid"])):
                if record["status"] != 2:
                    continue
                record["status"] = 3 if n % REFUSE_EVERY == 0 else 4 if n % LIMIT_EVERY == 0 else 1
                moved[record["status"]] += 1
        return jsonify(moved)

    @fake.get("/drill/state")
    def drill_state() -> Any:
        with corp.lock:
            accepted = ledger(corp).accepted
            records = {r["external_userid"]: r["status"] for r in corp.transfers.values()}
            theirs = [e for u in leavers for e in owned[u]]
            return jsonify(
                calls={e: corp.calls.count(e) for e in ENDPOINTS},
                wecom_status=Counter(str(s) for s in records.values()),
                duplicates=sum(n - 1 for n in accepted.values() if n > 1),
                never_transferred=sum(1 for e in theirs if e not in records),
                groups_left=sum(1 for g in corp.groups.values() if g.owner in pairs and not g.dismissed),
            )

    WSGIServer(("127.0.0.1", port), fake, log=None).serve_forever()


class HandoverCluster(Cluster):
    """Siyu's web and two queue workers (no scheduler: the drill plays it) against the leavers' fake."""

    def start(self, adds: int = 0) -> None:
        import subprocess

        import redis

        from bench.callbacks import reset_database

        reset_database(self.args.database_url)
        redis.Redis.from_url(self.args.redis_url).flushdb()
        subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        me = str(Path(__file__).resolve())
        fake = [sys.executable, me, "--serve-fake", str(self.sandbox_port), str(self.args.customers)]
        self._spawn("fake", [*fake, str(self.args.groups)])
        self.procs["web"] = gunicorn("wsgi:app", self.web_port, self.env, self.web_workers, "gevent", 1)
        self._spawn("worker-1", [str(BIN / "flask"), "worker"])
        self._spawn("worker-2", [str(BIN / "flask"), "worker"])
        wait_for_port(self.sandbox_port, timeout=300)
        wait_for_port(self.web_port)


def _items(c: Cluster) -> dict[str, int]:
    return c.by_status("handover_customers")


def handover(args: argparse.Namespace) -> bool:
    import os

    c = HandoverCluster(args)
    try:
        print(f"drill handover: {args.customers} customers and {args.groups} groups of {LEAVERS} leavers …", flush=True)
        c.start()
        os.environ.update(c.env)  # this process plays the scheduler, against the same services
        from bot import create_app
        from bot.extensions import db
        from bot.services.directory.sync import sync_directory
        from bot.services.groups.jobs import sync_groups
        from bot.services.handover.jobs import follow_handovers

        app = create_app({"database_url": args.database_url, "redis_url": args.redis_url})
        with app.app_context():
            sync_directory()
            db.session.commit()
        with app.app_context():
            sync_groups()
        requests.post(c.fake_url + "/drill/resign", timeout=30).raise_for_status()
        with app.app_context():
            sync_directory()  # the leavers seen leaving: their groups wait, their managers told
            db.session.commit()
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {api_token(c)}"
        pairs = requests.get(c.fake_url + "/drill/leavers", timeout=30).json()
        started = time.monotonic()
        for leaver, receiver in sorted(pairs.items()):
            res = api.post(c.web_url + "/api/v1/handovers", json={"from": leaver, "to": receiver}, timeout=300)
            if res.status_code != 202:
                raise RuntimeError(f"handover of {leaver}: {res.status_code} {res.text[:300]}")
        print(f"{len(pairs)} handovers queued; the workers are killed mid-run …", flush=True)
        deadline = time.monotonic() + args.fault_at + 60
        while time.monotonic() < deadline:  # until WeCom has been asked some, and some wait their turn
            killed_with = _items(c)
            if killed_with.get("waiting") and (killed_with.get("chosen") or killed_with.get("calling")):
                break
            time.sleep(0.05)
        c.kill("worker-1", restart_after=0)
        c.kill("worker-2")
        took_effect: dict[str, int] = {}
        rounds = 0
        while time.monotonic() - started < args.handover_timeout:
            time.sleep(args.follow_every)
            rounds += 1
            with app.app_context():
                follow_handovers()  # the scheduler's 15-minute follow-up
            items = _items(c)
            if not took_effect and not {"chosen", "calling"} & items.keys():
                took_effect = requests.post(c.fake_url + "/drill/take-effect", timeout=60).json()
            (open_,) = query_one(args.database_url, "SELECT count(*) FROM handovers WHERE finished_at IS NULL")
            if took_effect and open_ == 0:
                break
        state = requests.get(c.fake_url + "/drill/state", timeout=60).json()
        items = _items(c)
        groups = c.by_status("handover_groups")
        (unfinished,) = query_one(
            args.database_url,
            "SELECT count(*) FROM handover_customers WHERE status NOT IN ('done', 'refused', 'limit', 'failed')",
        )
        stranded = state["never_transferred"] + state["groups_left"] + int(unfinished)
        measured = {
            "customers": args.customers,
            "groups": args.groups,
            "items when the worker was killed": killed_with,
            "calls made": state["calls"],
            "customers by final status": items,
            "groups by status": groups,
            "WeCom's statuses": state["wecom_status"],
            "24 hours passed": took_effect,
            "follow-up rounds": rounds,
            "finished after s": round(time.monotonic() - started, 1),
            "duplicates": state["duplicates"],
            "stranded": stranded,
        }
        ok = state["duplicates"] == 0 and stranded == 0 and sum(items.values()) == args.customers
        return report("handover", {}, {**measured, "_ok": ok})
    finally:
        c.stop()
        print(f"(process logs in {c.tmp})")


def main() -> int:
    """Run as a script only as the drill's fake WeCom (``--serve-fake PORT CUSTOMERS GROUPS``), started by
    the cluster with its environment (the sandbox corp's settings)."""
    import os

    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-fake", nargs=3, metavar=("PORT", "CUSTOMERS", "GROUPS"), required=True)
    args = parser.parse_args()
    port, customers, groups = (int(v) for v in args.serve_fake)
    serve_fake(port, customers, groups, dict(os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
