"""Race-safe get-or-create for rows with a natural key.

Two workers handling the first events of one new customer (or member) at once would both insert it and
one would fail on the unique constraint. ``INSERT … ON CONFLICT DO NOTHING`` then ``SELECT`` lets both
go on with the same row: on PostgreSQL the second insert waits for the first transaction and then does
nothing; SQLite serialises writers anyway.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.extensions import db

M = TypeVar("M")


def get_or_insert(model: type[M], keys: dict[str, Any], **defaults: Any) -> M:
    """The row of ``model`` with ``keys`` (a unique key), inserted with ``defaults`` if missing; flushes."""
    return get_or_insert_created(model, keys, **defaults)[0]


def get_or_insert_created(model: type[M], keys: dict[str, Any], **defaults: Any) -> tuple[M, bool]:
    """``get_or_insert``, also saying whether this call inserted the row."""
    row = db.session.scalar(select(model).filter_by(**keys))
    if row is not None:
        return row, False
    return insert_or_get_created(model, keys, **defaults)


def insert_or_get_created(model: type[M], keys: dict[str, Any], **defaults: Any) -> tuple[M, bool]:
    """``get_or_insert_created`` for a row this transaction already knows to be missing (it looked, or it has
    just inserted the row the key names): the insert is tried first, sparing the look. Flushes."""
    db.session.flush()
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # RETURNING gives the new row in the same round trip; a conflict returns nothing, and the row another
    # transaction inserted is read as before.
    # the values as the execution's parameters, not in the statement: one statement (and cache key) whatever
    # they are, rather than a key built over the values for every row
    inserted = db.session.scalar(
        insert(model).on_conflict_do_nothing(index_elements=list(keys)).returning(model), {**keys, **defaults}
    )
    if inserted is not None:
        return inserted, True
    row = db.session.scalar(select(model).filter_by(**keys))
    assert row is not None
    return row, False
