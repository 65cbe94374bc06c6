"""Prometheus instruments: what each process counts. ``bot.scrape`` reports them with the shared state.

Counters and histograms live in the process that observes them (web: callbacks; worker: events, welcomes,
WeCom calls; scheduler: job runs). With ``PROMETHEUS_MULTIPROC_DIR`` set *before the process starts*, every
process on a machine writes its values to files in that directory and ``/metrics`` (or a worker's
``--metrics-port``) reports the sum over the machine's processes: gunicorn's workers, queue workers and the
scheduler alike. Without it, each process reports its own (the embedded ``flask dev``).

This module imports nothing of the app, so any layer may count here.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Histogram, multiprocess

CALLBACKS = Counter(
    "siyu_callbacks",
    "WeCom callbacks received, by event kind and outcome (stored, duplicate, refused_<status>, unavailable)",
    ["kind", "outcome"],
)
EVENTS = Counter(
    "siyu_events_processed", "Stored events processed by workers, by kind and resulting status", ["kind", "status"]
)
WECOM_CALLS = Counter(
    "siyu_wecom_calls",
    "Calls to the WeCom API by endpoint and errcode (0: success; 'unavailable': no usable answer)",
    ["endpoint", "errcode"],
)
WECOM_SECONDS = Histogram(
    "siyu_wecom_call_seconds",
    "Duration of WeCom API calls",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TOKEN_FETCHES = Counter("siyu_wecom_token_fetches", "Access tokens fetched from WeCom (gettoken)", ["outcome"])
TICKET_FETCHES = Counter(
    "siyu_wecom_ticket_fetches",
    "JS-SDK tickets fetched from WeCom, by kind (jsapi, agent_config) and outcome (errcode, 'unavailable')",
    ["kind", "outcome"],
)
WELCOMES = Counter("siyu_welcomes", "Welcome codes handled on the fast path, by outcome", ["status"])
WELCOME_LATENCY = Histogram(
    "siyu_welcome_latency_seconds",
    "From a callback's storage to WeCom accepting its welcome message (a welcome code lives 20 s)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 12, 16, 20, 30),
)
JOB_RUNS = Counter("siyu_job_runs", "Periodic job runs, by job and status", ["job", "status"])
JOB_SECONDS = Histogram(
    "siyu_job_duration_seconds", "Duration of periodic job runs", ["job"], buckets=(0.1, 1, 5, 30, 120, 600, 1800)
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit hook in multiprocess mode: a dead worker's gauges are dropped."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
