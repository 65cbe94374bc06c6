from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC, the one time representation stored (SQLite keeps no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def from_epoch(value: object) -> datetime | None:
    """WeCom's epoch seconds as naive UTC; None for missing or junk values."""
    try:
        seconds = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None) if seconds else None
