"""The fuzz drill: random and mutated envelopes at the webhook, then schemathesis against the JSON API."""

from __future__ import annotations

import argparse
import random
import re
import subprocess

import requests

from bench.callbacks import BIN, ROOT, query_one
from bench.drill_cluster import Cluster, api_token, report


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

        token = api_token(c)
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
