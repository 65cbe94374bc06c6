"""The refusals of the library's use cases, each naming the field at fault."""

from __future__ import annotations

from bot.services.errors import Conflict, Forbidden, Invalid, NotFound


class LibraryError(Invalid):
    """Content Siyu refuses (a missing title, a page WeCom cannot open), in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str, **params: object) -> None:
        super().__init__(message, field, **params)


class LibraryForbidden(Forbidden):
    """Content outside the user's stores (a store manager changing a corp-wide item)."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class LibraryNotFound(NotFound):
    """No such item, reply, folder or group — or none the user may see."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class LibraryConflict(Conflict):
    """What the state of things refuses (a group that still has replies)."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)
