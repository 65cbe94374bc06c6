"""What a request may carry and an answer may name: whole numbers the database can hold, download names."""

from __future__ import annotations

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
    """The custom customer field values a panel or sidebar form posted (``field-<id>``; a multiple-choice
    field as several values), for ``services.customers.fields.read_values``."""
    return {
        f.id: form.getlist(f"field-{f.id}") if f.kind == "choices" else form.get(f"field-{f.id}", "")
        for f in fields
        if f"field-{f.id}" in form or f.kind == "choices"
    }
