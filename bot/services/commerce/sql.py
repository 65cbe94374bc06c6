"""Set-based statements of the brand's imports, the same on PostgreSQL and SQLite: a key among many
(``= ANY`` of one array on PostgreSQL) and many rows inserted in one statement (the rows as one JSON
parameter on PostgreSQL), optionally replacing a row another transaction wrote meanwhile.

On PostgreSQL each of these binds one text parameter however many keys or rows it carries, written by
``json.dumps`` or a join: the driver's own dumping of a thousand-element list, element by element in Python,
cost more than the statement it fed (a third of an import batch's time, measured by ``bench/brand_data.py``)."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Date,
    DateTime,
    Enum,
    Integer,
    String,
    TypeDecorator,
    any_,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from bot.extensions import db


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _element(value: Any) -> str:
    """One element of an array literal: a whole number as it is, anything else quoted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raw = str(value.value if isinstance(value, enum.Enum) else value)
    return '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(keys: Iterable[Any]) -> str:
    """``keys`` as PostgreSQL's array literal (``{1,2}``, ``{"a","b"}``), to be cast to the column's array type."""
    return "{" + ",".join(_element(k) for k in keys) + "}"


class _Keys(TypeDecorator[list[Any]]):
    """An array parameter sent as its literal text: bound as ``%(p)s::TYPE[]`` with an untyped text value,
    PostgreSQL reads it as the array once, when binding. (A text parameter *cast* to an array in the statement
    would be read again for each row a scan filters: a hundred milliseconds for a thousand keys.)"""

    impl = ARRAY(String())
    cache_ok = True

    def __init__(self, element: Any) -> None:
        super().__init__()
        self.impl = ARRAY(element)

    def bind_processor(self, dialect: Any) -> Any:
        return array_literal  # the text as it is: ARRAY's own processing would take it for a list


def _keys_of(column: Any) -> _Keys:
    return _Keys(Integer() if isinstance(column.type, Integer) else String())


def among(column: Any, keys: Iterable[Any]) -> ColumnElement[bool]:
    """``column`` is one of ``keys``. On PostgreSQL one array parameter (``= ANY``) rather than a thousand:
    a statement of a thousand placeholders costs more to build and parse than to run."""
    keys = list(keys)
    if _postgresql():
        test: ColumnElement[bool] = column == any_(bindparam(None, keys, type_=_keys_of(column)))
        return test
    inside: ColumnElement[bool] = column.in_(keys)
    return inside


def among_param(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the keys the parameter ``name`` holds (a list given at execution): ``among`` for a
    statement built once and run many times."""
    if dialect == "postgresql":
        test: ColumnElement[bool] = column == any_(bindparam(name, type_=_keys_of(column)))
        return test
    inside: ColumnElement[bool] = column.in_(bindparam(name, expanding=True))
    return inside


def _naive(value: Any) -> Any:
    """An aware time as the columns hold times: naive UTC (anything else as it is)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _json_value(value: Any) -> Any:
    value = _naive(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not a column value: {type(value).__name__}")


def _as_json(table: Any, keys: list[str], rows: list[dict[str, Any]]) -> str:
    """The rows as one JSON text: the time and enum columns' values turned to text first, column by column
    (a time that recurs — the batch's own — once), since ``json.dumps`` calling its ``default`` for each
    such value cost as much as the dump itself."""
    converted = [key for key in keys if isinstance(table.c[key].type, DateTime | Date | Enum)]
    if converted:
        rows = [dict(row) for row in rows]
        for key in converted:
            seen: dict[Any, Any] = {None: None}
            for row in rows:
                value = row[key]
                text_ = seen.get(value)
                if text_ is None and value is not None:
                    text_ = seen[value] = value if isinstance(value, str) else _json_value(value)
                row[key] = text_
    return json.dumps(rows, ensure_ascii=False, default=_json_value)


def _with_defaults(table: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the columns' own Python defaults for what they leave out (a statement of text, as on
    PostgreSQL, would take none of them): a callable default called once for the whole batch."""
    missing = {
        column.key: column.default.arg if column.default.is_scalar else column.default.arg(None)
        for column in table.columns
        if column.key not in rows[0] and column.default is not None and not column.default.is_sequence
    }
    return [{**row, **missing} for row in rows] if missing else rows


def _present(table: Any, keys: list[str], key: str, values: list[Any]) -> dict[Any, Any]:
    """The rows of ``table`` whose ``key`` is among ``values``, as they are (their ``keys`` columns), locked
    until the transaction ends."""
    query = select(*(table.c[k] for k in keys)).where(among(table.c[key], values)).with_for_update()
    return {row[key]: row for row in db.session.execute(query).mappings()}


def insert_rows(table: Any, rows: list[dict[str, Any]], *, upsert_on: str | None = None) -> dict[Any, Any]:
    """Insert ``rows`` (dicts with the same keys) into ``table``. On PostgreSQL one statement of one JSON
    parameter (``SELECT … FROM json_populate_recordset``), whatever the number of rows.

    With ``upsert_on`` (a unique column; the rows carry ``created_at``), a row whose key another transaction
    wrote meanwhile replaces that row (its ``created_at`` kept) rather than fail the batch (``ON CONFLICT …
    DO UPDATE``: the later of two concurrent transactions waits for the first and then wins). Returns the
    rows replaced, by key, as they were (the ``rows``' columns), so that the caller can tell what changed."""
    if not rows:
        return {}
    rows = _with_defaults(table, rows)
    keys = list(rows[0])
    kept = {upsert_on, "created_at"}
    if not _postgresql():
        rows = [{k: _naive(v) for k, v in row.items()} for row in rows]
        if upsert_on is None:
            db.session.execute(insert(table), rows)
            return {}
        # SQLite lets one writer in at a time, but this read may come before another's commit: a row replaced
        # unseen is told by its creation time (kept by the replacing write), known by its key alone
        present = _present(table, keys, upsert_on, [row[upsert_on] for row in rows])
        statement = sqlite.insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[upsert_on], set_={k: statement.excluded[k] for k in keys if k not in kept}
        )
        returning = statement.returning(table.c[upsert_on], table.c.created_at, sort_by_parameter_order=True)
        written = db.session.execute(returning, rows).all()
        return {
            key: present.get(key, {})
            for (key, created), row in zip(written, rows, strict=True)
            if created != row["created_at"]
        }
    names = ", ".join(table.c[key].name for key in keys)  # a key that is not a column fails here
    params = {"rows": _as_json(table, keys, rows)}
    source = f"json_populate_recordset(NULL::{table.name}, CAST(:rows AS json))"
    sql = f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {source}"  # noqa: S608 - the table's names
    if upsert_on is None:
        db.session.execute(text(sql), params)
        return {}
    try:
        # Most batches meet no other batch's rows: the plain insert (cheaper than ON CONFLICT and its
        # RETURNING), in a savepoint so that a clash only sends this statement down the upsert's path.
        with db.session.begin_nested():
            db.session.execute(text(sql), params)
        return {}
    except IntegrityError:
        pass
    # the rows the clash was with, committed by now: read (and locked) as they were before they are replaced
    present = _present(table, keys, upsert_on, [row[upsert_on] for row in rows])
    assignments = ", ".join(f"{k} = EXCLUDED.{k}" for k in keys if k not in kept)
    # xmax is 0 on a row this statement inserted, the updating transaction's id on a row it replaced
    sql += f" ON CONFLICT ({upsert_on}) DO UPDATE SET {assignments} RETURNING {upsert_on}, xmax::text <> '0'"
    replaced = [key for key, again in db.session.execute(text(sql), params) if again]
    # a row committed between the read and the upsert is replaced unseen: known by its key alone
    return {key: present.get(key, {}) for key in replaced}
