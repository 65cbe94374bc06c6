"""The corp's clock (SIYU_TIMEZONE): its local time, its today and where its days start, against the
naive UTC every stored time is in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from bot.models._time import utcnow
from bot.services.clients import settings

#: the dates Siyu takes from a person — a segment's rule, a filter, a send's schedule: any customer's, with
#: room. 0001-01-01 or 9999-12-31 overflow the arithmetic done on them (a day added to a range's end, the
#: corp's offset moved to UTC), and no customer was added, born or messaged there. The refusals say
#: "日期应在 1900-01-01 与 2100-12-31 之间".
EARLIEST, LATEST = date(1900, 1, 1), date(2100, 12, 31)


def in_range(day: date) -> bool:
    """Whether ``day`` (a date, or the date of a datetime) is one Siyu takes: EARLIEST to LATEST."""
    return EARLIEST <= (day.date() if isinstance(day, datetime) else day) <= LATEST


def local(moment: datetime | None = None) -> datetime:
    """The corp's local time (aware) of naive-UTC ``moment`` (now by default)."""
    return (moment or utcnow()).replace(tzinfo=UTC).astimezone(settings().timezone)


def today() -> date:
    return local().date()


def midnight(day: date) -> datetime:
    """The corp's midnight starting ``day``, as naive UTC."""
    return datetime.combine(day, time(), settings().timezone).astimezone(UTC).replace(tzinfo=None)


def day_start(moment: datetime | None = None) -> datetime:
    """The start (naive UTC) of the corp's day that holds ``moment`` (now by default)."""
    return midnight(local(moment).date())


def to_utc(moment: datetime) -> datetime:
    """Naive UTC of ``moment``; a naive ``moment`` is on the corp's clock (as typed in the panel)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=settings().timezone)
    return moment.astimezone(UTC).replace(tzinfo=None)
