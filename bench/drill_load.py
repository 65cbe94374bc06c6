"""The load drill: the callback benchmark (bench/callbacks.py) with 2 and with 4 web processes."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from bench.callbacks import ROOT


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
                "--wecom-latency",
                getattr(args, "wecom_latency", "0"),
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
