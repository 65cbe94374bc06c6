"""Claims: what Siyu is about to have WeCom do is on record before WeCom is asked.

The rule. A service writes through the session and flushes; it does not commit. The boundary that called
it — a request of the panel or the API, a job, the processing of a callback — commits once, when the work
is done, so that a refusal or a crash half-way leaves nothing of it behind.

The one exception is a side effect in WeCom that must happen once: a welcome (one per welcome code), a
mass-send chunk (one ``add_msg_template`` each), a lifecycle task's card, send or tagging. WeCom keeps no
idempotency key for these; Siyu's own record is the key. So the service records its *claim* — the code
being sent, the chunk ``calling``, the task's step ``calling``, the send ``dispatching`` — and commits it
before WeCom is asked; what WeCom answered is recorded and committed in turn, before WeCom is asked again.
A second worker, a re-delivered callback or a run restarted after a crash then finds the claim and does
not ask twice; a claim left in doubt by a process killed mid-call is settled without a second effect (a
dispatch lists the mass messages WeCom made since the call and adopts the one saying what the chunk says,
asked of the chunk's member; a card is sent again and WeCom's duplicate check drops it; a used welcome
code is refused by WeCom).

This module is how, and the only way a service commits:

``on_record()`` — in the session. The block records the claim (or what WeCom answered); leaving it commits
the session: the claim, together with everything the unit of work had recorded before it, is then on
record. An exception inside leaves all of it uncommitted, for the boundary to roll back. Callback events
are processed a batch to a transaction (``callbacks.processing.process_batch``): a claim made while one
is handled commits the events handled before it too, each with its status (they are complete), and the
rest of that event's work is committed when it ends, on its own — so that no later event's failure can
roll it back and have it handled again after its claim.

``on_record_apart(engine)`` — the same idiom over a connection of its own: the block's statements are one
transaction of their own, committed when the block ends, and the session is left as it is. The welcome
claims are made this way because of where they run, not because they are another kind of claim: a welcome
sent while a callback is processed must not commit the processing's unit of work (it holds the event's
row locked and commits with the event's status, all or nothing), and the fast path sends a burst side by
side from threads, which have no session. Its claim is one statement for a batch of codes, so it neither
waits on the session's write lock (SQLite) nor keeps a transaction open while WeCom answers, well inside
the 20 s a welcome code lives.

Used by the welcomes (``channels.welcome``), the mass-send dispatch and tracking (``sends.dispatch``,
``sends.tracking``), the lifecycle runs (``lifecycle.runner``, ``lifecycle.actions``) and bulk tagging
(``tags.bulk``, whose items done are on record batch by batch before WeCom is asked for the next). The
store managers' daily digest claims its message in Redis instead (``SET NX`` on one key per manager and
day): the same idiom, on a store that is not the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from bot.extensions import db


@contextmanager
def on_record() -> Iterator[None]:
    """Record a claim (or what WeCom answered) inside; on leaving, the session is committed."""
    yield
    db.session.commit()


@contextmanager
def on_record_apart(engine: Engine) -> Iterator[Connection]:
    """Record a claim inside, over a connection of ``engine``'s own; committed on leaving, the session untouched."""
    with engine.begin() as connection:
        yield connection
