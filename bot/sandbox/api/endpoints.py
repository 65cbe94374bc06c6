"""What every family of the fake API shares: its table of endpoints, WeCom's answers and paging."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response

from bot.sandbox.corp import ApiError, FakeCorp

Body = dict[str, Any]
Endpoint = Callable[[FakeCorp, Body], Body]


class Endpoints(dict[str, Endpoint]):
    """One family's endpoints by their path under /cgi-bin/; ``@ENDPOINTS.route("user/list")`` adds one."""

    def route(self, path: str) -> Callable[[Endpoint], Endpoint]:
        def register(func: Endpoint) -> Endpoint:
            self[path] = func
            return func

        return register


def ok(**data: Any) -> Body:
    return {"errcode": 0, "errmsg": "ok", **data}


def require(body: Body, *names: str) -> None:
    for name in names:
        if body.get(name) in (None, "", []):
            raise ApiError(40058, f"missing parameter: {name}")


def paged(rows: list[Body], body: Body, default: int = 500) -> tuple[list[Body], str]:
    """WeCom's cursor paging: ``limit`` (≤ 1000) rows from ``cursor`` (here an offset)."""
    limit = int(body.get("limit") or default)
    if not 1 <= limit <= 1000:
        raise ApiError(40058, "limit is 1–1000")
    start = int(body.get("cursor") or 0)
    end = start + limit
    return rows[start:end], str(end) if end < len(rows) else ""


def answer(data: Body, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")
