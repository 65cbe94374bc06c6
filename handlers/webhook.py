"""``/wecom/callback``: WeCom's URL verification and event push (WeCom doc 96238 and 91144).

A POST is answered 200 with an empty body only once its event is durably stored; processing happens
later in a worker. Refusals: forged signature or another corp's message 403, anything undecryptable
or malformed 400, a body over the cap 413, storage down 503 (WeCom re-sends). Nothing is stored for a
refused callback.

The POST is answered by a WSGI layer in front of Flask (``_FastPath``, installed with the blueprint),
not by a Flask view: a callback needs no session, no CSRF check, no security headers for a browser
and no URL routing, and Flask's request machinery around those cost more CPU than storing the event
(bench/callbacks.py). The GET of URL verification stays an ordinary view.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.middleware.proxy_fix import ProxyFix

from bot import logs
from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue_events
from bot.metrics import CALLBACKS
from bot.services.callbacks.inbox import CallbackInbox, InboxUnavailable, IncomingEvent, StoredEvent
from bot.services.clients import callback_crypto, settings
from bot.wecom.crypto import CallbackCrypto
from bot.wecom.errors import CallbackError
from bot.wecom.events import ExternalContactEvent, parse_event

log = logging.getLogger(__name__)
bp = Blueprint("wecom_callback", __name__)
PATH = "/wecom/callback"


_INBOX_LOCK = threading.Lock()


def _inbox() -> CallbackInbox:
    """This app's inbox, made on first use (one per process: two first requests must not make two)."""
    inbox = current_app.extensions.get("siyu.inbox")
    if inbox is None:
        with _INBOX_LOCK:
            inbox = current_app.extensions.get("siyu.inbox")
            if inbox is None:
                inbox = CallbackInbox(db.engine, _enqueue_stored)
                current_app.extensions["siyu.inbox"] = inbox
    return inbox


def _enqueue_stored(stored: Sequence[StoredEvent]) -> None:
    """The inbox's hook: queue freshly stored events in one Redis round trip."""
    if stored:
        enqueue_events([s.id for s in stored if s.urgent], [s.id for s in stored if not s.urgent], redis_conn.client)


def _refuse(status: int, reason: str) -> Response:
    CALLBACKS.labels("-", f"refused_{status}").inc()
    log.warning("refused a callback from %s: %s %s", request.remote_addr, status, reason)
    return Response(reason + "\n", status=status, mimetype="text/plain")


@bp.get(PATH)
def verify_url() -> Response:
    signature, timestamp, nonce = (request.args.get(k, "") for k in ("msg_signature", "timestamp", "nonce"))
    echostr = request.args.get("echostr", "")
    if not (signature and timestamp and nonce and echostr):
        return _refuse(400, "msg_signature, timestamp, nonce and echostr are required")
    try:
        plain = callback_crypto().verify_url(signature, timestamp, nonce, echostr)
    except CallbackError as exc:
        return _refuse(exc.status, str(exc))
    # WeCom wants the bare plaintext: no quotes, no BOM, no newline.
    return Response(plain, mimetype="text/plain")


def _accept(
    body: bytes, args: dict[str, str], remote_addr: str | None, crypto: CallbackCrypto, inbox: CallbackInbox
) -> tuple[int, str]:
    """Store one POSTed callback: (status, text to answer)."""
    signature, timestamp, nonce = args.get("msg_signature", ""), args.get("timestamp", ""), args.get("nonce", "")
    if not (signature and timestamp and nonce):
        return _refused(403, "msg_signature, timestamp and nonce are required", remote_addr)
    try:
        plaintext = crypto.decrypt(body, signature, timestamp, nonce)
        event = parse_event(plaintext)
    except CallbackError as exc:
        return _refused(exc.status, str(exc), remote_addr)
    urgent = isinstance(event, ExternalContactEvent) and bool(event.welcome_code)
    incoming = IncomingEvent(
        dedupe_key=hashlib.sha256(plaintext.encode()).hexdigest(),
        kind=event.kind[:80],
        create_time=event.create_time,
        plaintext=plaintext,
        urgent=urgent,
    )
    try:
        new = inbox.store(incoming)
    except InboxUnavailable as exc:
        CALLBACKS.labels(incoming.kind, "unavailable").inc()
        log.error("callback %s not stored: %s", event.kind, exc)
        return 503, "storage unavailable, please retry\n"
    CALLBACKS.labels(incoming.kind, "stored" if new else "duplicate").inc()
    if not new:
        log.info("re-delivery of a %s callback acknowledged", event.kind)
    return 200, ""


def _refused(status: int, reason: str, remote_addr: str | None) -> tuple[int, str]:
    CALLBACKS.labels("-", f"refused_{status}").inc()
    log.warning("refused a callback from %s: %s %s", remote_addr, status, reason)
    return status, reason + "\n"


_REASONS = {
    200: "200 OK",
    400: "400 Bad Request",
    403: "403 Forbidden",
    413: "413 Payload Too Large",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


class _FastPath:
    """WSGI in front of the app: a POST to the webhook is answered here, everything else goes on to Flask.

    What Flask would have done for it and still matters is done here: the request id bound for the logs
    (and answered in X-Request-ID), the body cap (413 before reading more than the cap). What the app
    provides (the cap, the crypto, the inbox) is taken once; a callback needs no app context after that.
    """

    def __init__(self, app: Flask, wrapped: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wrapped = wrapped
        self._parts: tuple[int, CallbackCrypto, CallbackInbox] | None = None

    def parts(self) -> tuple[int, CallbackCrypto, CallbackInbox]:
        if self._parts is None:
            with self.app.app_context():
                self._parts = (settings().callback_max_bytes, callback_crypto(), _inbox())
        return self._parts

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wrapped(environ, start_response)
        request_id = logs.request_id(environ.get("HTTP_X_REQUEST_ID"))
        token = logs.bind(request_id=request_id)
        try:
            status, text = self._answer(environ)
        except Exception:  # what Flask would have logged and answered 500: logged here, with the request id
            log.exception("a callback could not be handled")
            status, text = 500, "internal error\n"
        finally:
            logs.unbind(token)
        data = text.encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8" if data else "text/html; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("X-Request-ID", request_id),
        ]
        start_response(_REASONS.get(status, f"{status} Error"), headers)
        return [data]

    def _answer(self, environ: dict[str, Any]) -> tuple[int, str]:
        remote_addr = environ.get("REMOTE_ADDR")
        cap, crypto, inbox = self.parts()
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return _refused(400, "Content-Length is not a number", remote_addr)
        if length > cap:
            return _refused(413, f"body over {cap} bytes", remote_addr)
        stream = environ["wsgi.input"]
        # Without a length (chunked) read up to one byte past the cap; with one, exactly that much.
        body = stream.read(length if length >= 0 else cap + 1)
        if len(body) > cap:
            return _refused(413, f"body over {cap} bytes", remote_addr)
        args: dict[str, str] = {}
        for key, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            args.setdefault(key, value)  # the first of a repeated parameter, as Flask's request.args.get
        return _accept(body, args, remote_addr, crypto, inbox)


@bp.record_once
def _install_fast_path(state: BlueprintSetupState) -> None:
    app = cast(Flask, state.app)  # a Flask app: the blueprint is registered by create_app
    outer = app.wsgi_app
    if isinstance(outer, ProxyFix):
        outer.app = _FastPath(app, outer.app)  # behind the proxy's fix: REMOTE_ADDR is the caller's
    else:
        app.wsgi_app = _FastPath(app, outer)  # type: ignore[method-assign]
