"""The RQ queues. Urgent work (a welcome code lives 20 s) has a queue of its own, read first.

Jobs are named by dotted path, so this module knows the queue and not the domains whose tasks it carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rq import Queue

URGENT = "siyu-urgent"  # the welcome fast path
ADDS = "siyu-adds"  # the rest of an add, after its welcome: ahead of later events about the same customer
EVENTS = "siyu-events"
DEFAULT = "siyu-default"
WEBHOOKS = "siyu-webhooks"  # deliveries to the brand's endpoints: last, so that they never hold up the rest
QUEUE_NAMES = (URGENT, ADDS, EVENTS, DEFAULT, WEBHOOKS)
#: events handled by one job: small enough that one slow batch does not hold up the rest for long
EVENTS_PER_JOB = 25
#: adds waiting for their welcome (event ids), taken in batches of up to WELCOMES_PER_JOB
WELCOME_LIST = "siyu:welcome:pending"
WELCOME_WAKE = "siyu:welcome:wake"
WELCOMES_PER_JOB = 128
JOB_OPTIONS: dict[str, Any] = {"result_ttl": 0, "failure_ttl": 7 * 86400, "timeout": 300}
#: the two tasks the queue itself starts (the callbacks and channels domains define them)
PROCESS_EVENTS = "bot.services.callbacks.jobs.process_events"
SEND_WELCOMES = "bot.services.channels.jobs.send_welcomes"


def queue(name: str, connection: Any) -> Queue:
    return Queue(name, connection=connection)


def enqueue_events(urgent_ids: Sequence[int], other_ids: Sequence[int], connection: Any, *, name: str = EVENTS) -> None:
    """Urgent events (adds with a welcome code) go to the welcome fast path in batches, which then queues
    them for their full processing; the others are processed in chunks."""
    pipe = connection.pipeline()
    if urgent_ids:
        # The ids wait in a list; a job only wakes a welcome worker, which takes whatever is waiting. One
        # wake-up is enough while one is pending (the worker clears the flag before it starts taking).
        # The push and the flag in one round trip, the push first (a worker clears the flag, then takes).
        _, raised = (
            connection.pipeline(transaction=False)
            .rpush(WELCOME_LIST, *urgent_ids)
            .set(WELCOME_WAKE, 1, nx=True, ex=30)
            .execute()
        )
        if raised:
            wake_welcome_worker(connection, pipe)
    if other_ids:
        chunks = [list(other_ids[i : i + EVENTS_PER_JOB]) for i in range(0, len(other_ids), EVENTS_PER_JOB)]
        queue(name, connection).enqueue_many(
            [Queue.prepare_data(PROCESS_EVENTS, args=(chunk,), **JOB_OPTIONS) for chunk in chunks], pipeline=pipe
        )
    pipe.execute()


def wake_welcome_worker(connection: Any, pipeline: Any = None) -> None:
    queue(URGENT, connection).enqueue_call(SEND_WELCOMES, pipeline=pipeline, **JOB_OPTIONS)


def enqueue(func: Callable[..., Any], *args: Any, connection: Any, name: str = DEFAULT) -> None:
    queue(name, connection).enqueue_call(func, args=args, **JOB_OPTIONS)
