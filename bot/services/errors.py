"""The one error model of the use cases: what was refused, in words for the person who asked, and the input
field at fault.

A service raises a ``ServiceError`` (its message a translatable text marked with ``N_``); each front door
translates it once — the API into its JSON error (``status``, ``code``, the field), the panel into a
flashed or form-field message. WeCom's own refusals reach the front doors as ``WeComRefused``, so that
neither door needs to know ``bot.wecom``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, ClassVar, TypeVar

from bot.wecom.errors import UnknownMember, WeComError

F = TypeVar("F", bound=Callable[..., Any])


def N_(message: str) -> str:
    """Marks a message for the translation catalogue; the panel translates it when it shows it."""
    return message


class ServiceError(Exception):
    """A use case refused what it was asked. ``field`` names the input at fault (None: the request)."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_parameter"

    def __init__(self, message: str, field: str | None = None, **params: object) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.field = field
        #: values for the message's ``%(name)s`` placeholders (filled after translation)
        self.params = params

    def text(self) -> str:
        """The message with its values, untranslated (the API's words)."""
        return self.message % self.params if self.params else self.message


class Invalid(ServiceError, ValueError):
    """The input cannot be taken as it is (a ValueError too, for callers that parse)."""


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    """The input is fine but the state of things refuses it (a QR code WeCom no longer serves, a used state)."""

    status = 409
    code = "conflict"


class TooMany(ServiceError):
    """The user has used up a quota (so many bytes a day): the words name the limit; later it passes."""

    status = 429
    code = "quota_exceeded"


class WeComRefused(ServiceError):
    """WeCom answered an error to a call made for the user: its errcode and errmsg, for the user to act on."""

    status = 502
    code = "wecom_refused"

    def __init__(
        self,
        message: str,
        field: str | None = None,
        *,
        errcode: int | None = None,
        errmsg: str = "",
        endpoint: str = "",
    ) -> None:
        super().__init__(message, field)
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint

    @classmethod
    def from_error(cls, exc: WeComError) -> WeComRefused:
        kind, field = (UnknownStaff, "staff") if isinstance(exc, UnknownMember) else (cls, None)
        return kind(
            f"WeCom refused: {exc.errcode} {exc.errmsg}",
            field,
            errcode=exc.errcode,
            errmsg=exc.errmsg,
            endpoint=exc.endpoint or "",
        )


class UnknownStaff(WeComRefused):
    """WeCom does not know a member the request named: the caller's to fix, not WeCom's failure."""

    status = 400
    code = "invalid_parameter"


@contextmanager
def wecom_refusals() -> Iterator[None]:
    """Inside: a WeCom error becomes ``WeComRefused`` (for use cases the front doors call)."""
    try:
        yield
    except WeComError as exc:
        raise WeComRefused.from_error(exc) from exc


def translates_wecom_errors(func: F) -> F:
    """The decorator form of ``wecom_refusals``."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with wecom_refusals():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
