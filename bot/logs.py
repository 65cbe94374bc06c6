"""Logging: plain lines for a terminal, or one JSON object per line for a log pipeline.

``SIYU_LOG_FORMAT=json`` writes each record as JSON (python-json-logger) with the time, level, logger,
message, process id, and the ids of what is being worked on: the HTTP request (``request_id``, taken from
an ``X-Request-ID`` header that looks like one, or made up, and returned in the answer), the stored
callback event a worker processes (``event_id``) and the periodic job that runs (``job``). Both formats
carry the same context.

What is logged at INFO names records by id (events, sends, jobs, tag and group ids), never customers'
names, remarks or phone numbers, and never secrets or tokens: SQL errors hide their parameters
(``hide_parameters``), and the WeCom client logs endpoints, not URLs with their ``access_token``.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("siyu_log_context", default={})  # noqa: B039 - never mutated: bind() sets a new dict
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Add ids to every record logged inside the block (nested blocks add to the outer ones)."""
    token = bind(**values)
    try:
        yield
    finally:
        unbind(token)


def bind(**values: Any) -> contextvars.Token[dict[str, Any]]:
    """Add ids until ``unbind(token)``: for a request, whose start and end are separate hooks."""
    return _CONTEXT.set({**_CONTEXT.get(), **values})


def unbind(token: contextvars.Token[dict[str, Any]]) -> None:
    _CONTEXT.reset(token)


def request_id(header: str | None) -> str:
    """The caller's request id if it looks like one (a proxy's or load balancer's), else a new one."""
    return header if header and _REQUEST_ID.match(header) else uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Puts the current context on each record: as attributes (JSON) and as one ``[k=v …]`` text."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        for key, value in context.items():
            setattr(record, key, value)
        record.context = " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]" if context else ""
        return True


RQ_LOGGERS = ("rq.worker", "rq.job", "rq.queue", "rq.registry", "rq.scheduler")


class SiyuHandler(logging.StreamHandler):
    """The handler Siyu puts on the root logger (recognised, and replaced, when configured again)."""


def configure(level: str, fmt: str, stream: IO[str] | None = None) -> None:
    """Set up the root logger's Siyu handler, to stderr or ``stream`` (a later call replaces it)."""
    root = logging.getLogger()
    root.setLevel(level)
    for old in [h for h in root.handlers if isinstance(h, SiyuHandler)]:
        root.removeHandler(old)
    handler = SiyuHandler(stream)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                reserved_attrs=[*RESERVED_ATTRS, "taskName", "context"],
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    # APScheduler logs two lines per run; the sweeps run every few seconds. Siyu logs its own line per run
    # that did something (bot.jobs.scheduler.run_job), and every failure.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    # RQ logs four INFO lines per job (picked, completed, OK, result discarded) around Siyu's own one line
    # per event: kept from DEBUG only; its warnings and failures always show.
    for name in RQ_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.NOTSET if logging.getLevelName(level) <= logging.DEBUG else logging.WARNING
        )
