import hashlib

from sqlalchemy import select

from bot.extensions import db
from bot.models import CallbackEvent, EventStatus
from bot.services.callbacks.inbox import CallbackInbox, IncomingEvent


def incoming(n, urgent=False):
    return IncomingEvent(hashlib.sha256(str(n).encode()).hexdigest(), "test.kind", 1, f"<xml><N>{n}</N></xml>", urgent)


def test_copies_in_one_batch_are_stored_once(ctx):
    inbox = CallbackInbox(db.engine, lambda stored: None)
    stored = inbox._commit([incoming(1), incoming(1), incoming(2)])
    assert len(stored) == 2
    assert inbox._commit([incoming(2)]) == []  # already there


def test_of_copies_in_one_batch_one_is_answered_new(ctx):
    from bot.services.callbacks.inbox import _Waiter

    inbox = CallbackInbox(db.engine, lambda stored: None)
    waiters = [_Waiter() for _ in range(3)]
    inbox._store_batch([(incoming(5), waiters[0]), (incoming(5), waiters[1]), (incoming(6), waiters[2])])
    assert [w.wait(1) for w in waiters] == [True, False, True]


def test_urgent_events_are_pushed_at_once_and_others_at_the_barrier(ctx):
    pushed = []
    inbox = CallbackInbox(db.engine, lambda stored: pushed.extend(stored))
    inbox.queue_every = 1000
    assert inbox.store(incoming(1)) is True
    assert inbox.store(incoming(1)) is False  # a re-delivery
    inbox.store(incoming(2, urgent=True))
    inbox.settle()
    assert sorted(s.urgent for s in pushed) == [False, True]


def test_a_failed_push_leaves_the_event_stored_for_the_sweeper(ctx):
    def redis_down(stored):
        raise ConnectionError("redis is restarting")

    inbox = CallbackInbox(db.engine, redis_down)
    assert inbox.store(incoming(3, urgent=True)) is True
    inbox.settle()
    [row] = db.session.scalars(select(CallbackEvent)).all()
    assert row.status == EventStatus.pending
