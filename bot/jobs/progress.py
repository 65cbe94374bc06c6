"""Progress of long jobs, kept in Redis so any web process can show it."""

from __future__ import annotations

import json
import time
from typing import Any

from bot.extensions import redis_conn

TTL = 3600


def write_progress(job: str, done: int, total: int, state: str = "running", **details: Any) -> None:
    """Progress as data (counts, an error); the reader words it in its own language."""
    record = {"done": done, "total": total, "state": state, "at": time.time(), **details}
    redis_conn.client.set(f"siyu:progress:{job}", json.dumps(record, ensure_ascii=False), ex=TTL)


def read_progress(job: str) -> dict[str, Any] | None:
    raw = redis_conn.client.get(f"siyu:progress:{job}")
    return json.loads(raw) if raw else None
