"""Set-based statements of the brand's imports, the same on PostgreSQL and SQLite: a key among many
(``= ANY`` of one array on PostgreSQL) and many rows inserted in one statement (``unnest`` of one array per
column on PostgreSQL), optionally replacing a row another transaction wrote meanwhile."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ARRAY, JSON, ColumnElement, Enum, String, any_, bindparam, insert, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from bot.extensions import db


def among(column: Any, keys: Iterable[Any]) -> ColumnElement[bool]:
    """``column`` is one of ``keys``. On PostgreSQL one array parameter (``= ANY``) rather than a thousand:
    a statement of a thousand placeholders costs more to build and parse than to run."""
    keys = list(keys)
    if db.session.get_bind().dialect.name == "postgresql":
        element = column.type if not isinstance(column.type, Enum) else String()
        test: ColumnElement[bool] = column == any_(bindparam(None, keys, type_=ARRAY(element)))
        return test
    inside: ColumnElement[bool] = column.in_(keys)
    return inside


def insert_rows(table: Any, rows: list[dict[str, Any]], *, upsert_on: str | None = None) -> set[Any]:
    """Insert ``rows`` (dicts with the same keys) into ``table``. On PostgreSQL one statement of one array
    parameter per column (``SELECT … FROM unnest(…)``), whatever the number of rows: a thousand rows bound
    one placeholder each make a statement that costs more to build and parse than to run.

    With ``upsert_on`` (a unique column; the rows carry ``created_at``), a row whose key another transaction
    wrote meanwhile replaces that row (its ``created_at`` kept) rather than fail the batch (``ON CONFLICT …
    DO UPDATE``: the later of two concurrent transactions waits for the first and then wins). Returns the
    keys that replaced a row."""
    if not rows:
        return set()
    keys = list(rows[0])
    kept = {upsert_on, "created_at"}
    if db.session.get_bind().dialect.name != "postgresql":
        if upsert_on is None:
            db.session.execute(insert(table), rows)
            return set()
        statement = sqlite.insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[upsert_on], set_={k: statement.excluded[k] for k in keys if k not in kept}
        )
        returning = statement.returning(table.c[upsert_on], table.c.created_at, sort_by_parameter_order=True)
        written = db.session.execute(returning, rows).all()
        # a replaced row kept its own creation time
        return {key for (key, created), row in zip(written, rows, strict=True) if created != row["created_at"]}
    dialect = db.session.get_bind().dialect
    casts, params = [], {}
    for n, key in enumerate(keys):
        column = table.c[key]
        values = [row[key] for row in rows]
        if isinstance(column.type, JSON):
            values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
        elif isinstance(column.type, Enum):
            values = [None if v is None else str(v.value if isinstance(v, enum.Enum) else v) for v in values]
        sql_type = "TEXT" if isinstance(column.type, Enum | String) else column.type.compile(dialect)
        casts.append(f"CAST(:p{n} AS {sql_type}[])")
        params[f"p{n}"] = values
    unnest = f"unnest({', '.join(casts)})"
    sql = f"INSERT INTO {table.name} ({', '.join(keys)}) SELECT * FROM {unnest}"  # noqa: S608 - table's names
    if upsert_on is None:
        db.session.execute(text(sql), params)
        return set()
    try:
        # Most batches meet no other batch's rows: the plain insert (cheaper than ON CONFLICT and its
        # RETURNING), in a savepoint so that a clash only sends this statement down the upsert's path.
        with db.session.begin_nested():
            db.session.execute(text(sql), params)
        return set()
    except IntegrityError:
        pass
    assignments = ", ".join(f"{k} = EXCLUDED.{k}" for k in keys if k not in kept)
    # xmax is 0 on a row this statement inserted, the updating transaction's id on a row it replaced
    sql += f" ON CONFLICT ({upsert_on}) DO UPDATE SET {assignments} RETURNING {upsert_on}, xmax::text <> '0'"
    return {key for key, replaced in db.session.execute(text(sql), params) if replaced}
