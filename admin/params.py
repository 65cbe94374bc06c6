"""What a request may carry and an answer may name: whole numbers the database can hold, download names."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator

from bot.services import corp_time

#: the largest whole number a request may carry: ids, counts and orders are 32-bit in the database
MAX_INT = 2**31 - 1


def whole(value: str) -> int:
    """``request.args.get(name, type=whole)``: a whole number the database can hold; anything else (junk
    or a number beyond ±MAX_INT) is a ValueError, so the argument's default applies."""
    number = int(value)
    if not -MAX_INT <= number <= MAX_INT:
        raise ValueError("out of range")
    return number


def _in_range(day: date) -> date:
    if not corp_time.in_range(day):
        raise ValueError(f"expected a date between {corp_time.EARLIEST} and {corp_time.LATEST}")
    return day


#: a date in an API query or body, 1900-01-01 to 2100-12-31 (others overflow the day arithmetic of filters)
Day = Annotated[date, AfterValidator(_in_range)]


def download_name(name: str) -> str:
    """A file name for Content-Disposition: Flask's send_file writes it the RFC 5987 way (``filename*``
    for Chinese, quoted and escaped otherwise); control characters, which no header may carry, are dropped."""
    cleaned = "".join(c for c in name if c.isprintable())
    return cleaned or "download"


def submitted_fields(form: Any, fields: list[Any]) -> dict[int, Any]:
    """The custom customer field values a panel or sidebar form changed (``field-<id>``; a multiple-choice
    field as several values), for ``services.customers.fields.read_values``. Each input comes with the value
    the page showed (``was-<id>``): a field left as it was shown is not written, so a form opened before
    someone else's change does not undo it."""
    changed: dict[int, Any] = {}
    for f in fields:
        name = f"field-{f.id}"
        if f.kind == "choices":
            value: Any = form.getlist(name)
            same = json.dumps(sorted(value), ensure_ascii=False) == json.dumps(
                sorted(_was_list(form.get(f"was-{f.id}"))), ensure_ascii=False
            )
        elif name in form:
            value = form.get(name, "")
            same = f"was-{f.id}" in form and value.strip() == form.get(f"was-{f.id}", "").strip()
        else:
            continue
        if f"was-{f.id}" not in form or not same:
            changed[f.id] = value
    return changed


def _was_list(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []
