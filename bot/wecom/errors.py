"""Typed exceptions for WeCom's error codes (WeCom doc 90313, the global error codes)."""

from __future__ import annotations

from typing import ClassVar


class WeComError(Exception):
    """WeCom answered with a non-zero errcode, or could not be reached."""

    codes: ClassVar[tuple[int, ...]] = ()
    #: whether retrying the same call later can succeed
    retryable: ClassVar[bool] = False

    def __init__(self, errcode: int | None, errmsg: str = "", endpoint: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        super().__init__(f"{endpoint or 'wecom'}: errcode={errcode} {errmsg}".strip())

    @staticmethod
    def for_code(errcode: int, errmsg: str = "", endpoint: str = "") -> WeComError:
        cls = _BY_CODE.get(errcode, WeComError)
        return cls(errcode, errmsg, endpoint)


class WeComUnavailable(WeComError):
    """Network failure, timeout or an HTTP error status: nothing was answered."""

    retryable = True


class DownloadFailed(WeComUnavailable):
    """An image WeCom serves by URL could not be fetched: ``errmsg`` says why (an HTTP status, a host that is
    not WeCom's, a redirect, a timeout), in words for the person who asked for it."""


class SystemBusy(WeComError):
    codes = (-1,)
    retryable = True


class TokenInvalid(WeComError):
    """The access token is invalid, expired or missing: refresh it and retry once."""

    codes = (40014, 42001, 41001)
    retryable = True


class CredentialRejected(WeComError):
    """gettoken refused the corp id or secret: a configuration problem, not retryable."""

    codes = (40001, 40013, 40091, 41002, 41004)


class RateLimited(WeComError):
    """45009: the per-API frequency limit; WeCom blocks until the window ends."""

    codes = (45009,)
    retryable = True

    def __init__(self, errcode: int | None, errmsg: str = "", endpoint: str = "", retry_after: float = 60.0):
        super().__init__(errcode, errmsg, endpoint)
        self.retry_after = retry_after


class ConcurrencyLimited(WeComError):
    codes = (45033,)
    retryable = True


class NoPermission(WeComError):
    codes = (48002, 60020)


class MemberNotActive(WeComError):
    codes = (41054,)


class UnknownExternalContact(WeComError):
    codes = (40096, 84061)


class WelcomeCodeInvalid(WeComError):
    codes = (41050,)


class WelcomeAlreadySent(WeComError):
    codes = (41051,)


class WelcomeBeingSent(WeComError):
    codes = (41096,)
    retryable = True


class MassSendDispatching(WeComError):
    codes = (41063,)
    retryable = True


class UnknownConfig(WeComError):
    """A contact way's config_id WeCom does not have (41044): deleted in the console, or never made."""

    codes = (41044,)


class UnknownMember(WeComError):
    """A userid WeCom does not know (60111): the request named someone outside the corp."""

    codes = (60111,)


class UnknownGroupChat(WeComError):
    """A customer group chat WeCom no longer has (40050): dismissed, or never there."""

    codes = (40050,)


class OAuthCodeInvalid(WeComError):
    """auth/getuserinfo refused the OAuth2 code (40029): unknown, already used, or older than 5 minutes
    (WeCom doc 91023). The page asks WeCom for a fresh one by sending the member through authorize again."""

    codes = (40029,)


_BY_CODE: dict[int, type[WeComError]] = {
    code: cls
    for cls in (
        SystemBusy,
        TokenInvalid,
        CredentialRejected,
        RateLimited,
        ConcurrencyLimited,
        NoPermission,
        MemberNotActive,
        UnknownExternalContact,
        WelcomeCodeInvalid,
        WelcomeAlreadySent,
        WelcomeBeingSent,
        MassSendDispatching,
        UnknownConfig,
        UnknownMember,
        UnknownGroupChat,
        OAuthCodeInvalid,
    )
    for code in cls.codes
}


class CallbackError(Exception):
    """An inbound callback was refused; ``status`` is the HTTP answer it gets."""

    status = 400


class SignatureMismatch(CallbackError):
    status = 403


class StaleCallback(CallbackError):
    """Correctly signed, but its timestamp lies outside the accepted window (a replay, or a clock far off)."""

    status = 403


class ReceiverMismatch(CallbackError):
    """The decrypted ReceiveId is not our corp id (-40005)."""

    status = 403


class MalformedCallback(CallbackError):
    status = 400
