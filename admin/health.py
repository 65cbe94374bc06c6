"""GET /healthz: is the database reachable, is Redis reachable. GET /metrics: Prometheus (bot.scrape)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from bot import scrape
from bot.extensions import db, redis_conn

bp = Blueprint("health", __name__)


#: set on the app while a process prepares what it promises (``flask dev``: the sandbox's admin and token)
STARTING = "siyu.starting"


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    if current_app.extensions.get(STARTING):
        # Not yet ready: 503 so that whoever waits for health keeps waiting.
        return jsonify(ok=False, status="starting"), 503
    checks: dict[str, dict[str, object]] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "backend": db.engine.dialect.name}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    finally:
        db.session.rollback()
    try:
        redis_conn.client.ping()
        checks["redis"] = {"ok": True, "embedded": redis_conn.embedded}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
    ok = all(bool(c["ok"]) for c in checks.values())
    # 200 either way: the body says what is down (load balancers that want a failure code use "ok").
    return jsonify(ok=ok, **checks), 200


@bp.get("/metrics")
def prometheus() -> ResponseReturnValue:
    token = current_app.config["SIYU"].metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return Response("a bearer token is required\n", status=401, mimetype="text/plain")
    body, content_type = scrape.exposition(current_app._get_current_object())  # type: ignore[attr-defined]
    return Response(body, content_type=content_type)
