"""A brand's webhook receiver, for the demo, the tests and the benchmark: a real HTTP server that checks each
delivery's signature as a brand's system would, remembers what it got, and misbehaves on demand (fails,
fails every other time, answers slowly, hangs, redirects) so that Siyu's sender can be seen coping."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from bot.services.webhooks.sending import verify

MODES = ("ok", "fail", "flaky", "slow", "hang", "redirect")


@dataclass
class Received:
    event_id: str
    type: str
    body: dict[str, Any]
    signed: bool  # the signature checked out against one of the receiver's secrets (None known: False)
    answered: int
    at: float = field(default_factory=time.time)


class WebhookReceiver:
    """WSGI app. ``secrets``: what it verifies with; ``mode``: how it answers; ``delay``: seconds to wait
    when slow or hanging."""

    def __init__(self, secrets: list[str] | None = None, mode: str = "ok", delay: float = 0.0, keep: int = 100_000):
        self.secrets = list(secrets or [])
        self.mode = mode
        self.delay = delay
        self.keep = keep
        self.received: list[Received] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        if request.method != "POST":
            if request.args.get("all"):  # every delivery with when it arrived (the benchmark's latencies)
                with self._lock:
                    rows = [{"id": r.event_id, "at": r.at, "data": r.body.get("data")} for r in self.received]
                return Response(json.dumps({"attempts": self.attempts, "rows": rows}), mimetype="application/json")
            return Response(json.dumps(self.summary(), ensure_ascii=False), mimetype="application/json")
        body = request.get_data(cache=False)
        with self._lock:
            self.attempts += 1
            attempt = self.attempts
        if self.mode in ("slow", "hang"):
            time.sleep(self.delay)
        if self.mode == "redirect":
            return Response("", 302, headers={"Location": "http://127.0.0.1:1/elsewhere"})
        header = request.headers.get("Siyu-Signature", "")
        signed = any(verify(s, header, body) for s in self.secrets)
        if self.secrets and not signed:
            return Response("bad signature", 400)
        failing = self.mode == "fail" or (self.mode == "flaky" and attempt % 2 == 1)
        status = 503 if failing else 200
        if not failing:
            try:
                parsed = json.loads(body)
            except ValueError:
                return Response("not json", 400)
            with self._lock:
                self.received.append(Received(parsed.get("id", ""), parsed.get("type", ""), parsed, signed, status))
                del self.received[: -self.keep]
        return Response("ok" if status == 200 else "try later", status)

    def ids(self) -> list[str]:
        with self._lock:
            return [r.event_id for r in self.received]

    def of_type(self, event_type: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.type == event_type]

    def summary(self, last: int = 50) -> dict[str, Any]:
        with self._lock:
            rows = self.received[-last:]
            return {
                "attempts": self.attempts,
                "received": len(self.received),
                "last": [
                    {"id": r.event_id, "type": r.type, "signed": r.signed, "data": r.body.get("data")} for r in rows
                ],
            }
