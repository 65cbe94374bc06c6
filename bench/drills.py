"""Drills: Siyu as deployed (gunicorn, queue workers, a welcome worker, a scheduler) under load and faults.

    .venv/bin/python bench/drills.py NAME [--adds N --rate R]      (make drills: every one in turn)

With --wecom-latency 50ms±20ms the fake WeCom answers every API call after that delay (bench/latency.py),
as real WeCom does; the default is the loopback fake's own speed.

NAME is one of:
  load              the callback benchmark (bench/callbacks.py) with 2 and with 4 web processes, 2 workers
  worker-kill       kill -9 the welcome worker and a queue worker in the middle of a burst of adds
  send-kill         kill -9 the workers while a mass send to every customer waits for WeCom's late answer
  redis-restart     restart Redis (it keeps nothing on disk here: every queued job is lost) during a burst
  postgres-restart  restart PostgreSQL during a burst (the webhook answers 503; WeCom re-sends)
  wecom-outage      WeCom answers 45009, then -1, then nothing (timeouts) to every call, a minute each
  token-storm       every access token expires, five times, while every process is calling WeCom
  fuzz              random and mutated envelopes at the webhook, then schemathesis against the JSON API
  handover          20,000 customers and 300 groups of five leavers handed over while a worker is killed
                    (bench/drill_handover.py: calls made, final statuses, duplicates and stranded, both 0)

Each adds drill sends signed add_external_contact callbacks (a channel with a welcome message) the way
WeCom does: a callback not answered 200 is sent again, up to three more times. After the fault it waits for
the queue to drain and prints what it measured: callbacks acknowledged, events stored and their statuses
(lost = acknowledged but not stored; every event must end done), welcomes accepted by the fake WeCom,
codes Siyu tried more than once, codes accepted more than once (a duplicate message), welcomes later than
20 s (their code would have expired at WeCom), and what the fault cost. RESULT: ok means zero lost events,
zero duplicate welcomes and every event done.

The drills live beside this entry point: bench/drill_load.py, bench/drill_faults.py (kills, restarts,
WeCom outages, token storms) and bench/drill_fuzz.py; what they share (the cluster of processes, the burst
of adds, the report) in bench/drill_cluster.py.

Needs PostgreSQL and Redis (the redis-restart and postgres-restart drills restart the machine's own
servers: `service redis-server restart`, `pg_ctlcluster`); the scratch database is dropped and recreated.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Every benchmark runs against the built-in sandbox (SIYU_SANDBOX), never a real corp.
os.environ.setdefault("SIYU_SANDBOX", "1")

from bench.drill_faults import (  # noqa: E402 - after sys.path.insert: run as a script
    postgres_restart,
    redis_restart,
    send_kill,
    token_storm,
    wecom_outage,
    worker_kill,
)
from bench.drill_fuzz import fuzz  # noqa: E402 - after sys.path.insert: run as a script
from bench.drill_handover import handover  # noqa: E402 - after sys.path.insert: run as a script
from bench.drill_load import load  # noqa: E402 - after sys.path.insert: run as a script
from bench.latency import parse_latency  # noqa: E402 - after sys.path.insert: run as a script

DRILLS = {
    "load": load,
    "worker-kill": worker_kill,
    "send-kill": send_kill,
    "redis-restart": redis_restart,
    "postgres-restart": postgres_restart,
    "wecom-outage": wecom_outage,
    "token-storm": token_storm,
    "fuzz": fuzz,
    "handover": handover,
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
    parser.add_argument("--customers", type=int, default=20_000, help="the leavers' customers (handover)")
    parser.add_argument("--groups", type=int, default=300, help="the leavers' groups (handover)")
    parser.add_argument("--follow-every", type=float, default=3, help="seconds between follow-ups (handover)")
    parser.add_argument("--handover-timeout", type=float, default=900, help="seconds the handover may take")
    parser.add_argument(
        "--wecom-latency",
        default="0",
        metavar="DELAY[±JITTER]",
        help="the fake WeCom waits this long before each API answer, e.g. 50ms±20ms (default 0)",
    )
    args = parser.parse_args()
    parse_latency(args.wecom_latency)  # a bad value is refused here, not in the fake's process
    names = list(DRILLS) if args.drill == "all" else [args.drill]
    results = {name: DRILLS[name](args) for name in names}
    if len(results) > 1:
        print("\n" + "\n".join(f"{name:>18}: {'ok' if ok else 'PROBLEM'}" for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
