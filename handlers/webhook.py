"""``/wecom/callback``: WeCom's URL verification and event push (WeCom doc 96238 and 91144).

A POST is answered 200 with an empty body only once its event is durably stored; processing happens
later in a worker. Refusals: forged signature or another corp's message 403, anything undecryptable
or malformed 400, a body over the cap 413, storage down 503 (WeCom re-sends). Nothing is stored for a
refused callback.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence

from flask import Blueprint, Response, current_app, request

from bot.extensions import db, redis_conn
from bot.jobs.queue import enqueue_events
from bot.metrics import CALLBACKS
from bot.services.callbacks.inbox import CallbackInbox, InboxUnavailable, IncomingEvent, StoredEvent
from bot.services.clients import callback_crypto, settings
from bot.wecom.errors import CallbackError
from bot.wecom.events import ExternalContactEvent, parse_event

log = logging.getLogger(__name__)
bp = Blueprint("wecom_callback", __name__)


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


def _query() -> tuple[str, str, str]:
    return (
        request.args.get("msg_signature", ""),
        request.args.get("timestamp", ""),
        request.args.get("nonce", ""),
    )


@bp.get("/wecom/callback")
def verify_url() -> Response:
    signature, timestamp, nonce = _query()
    echostr = request.args.get("echostr", "")
    if not (signature and timestamp and nonce and echostr):
        return _refuse(400, "msg_signature, timestamp, nonce and echostr are required")
    try:
        plain = callback_crypto().verify_url(signature, timestamp, nonce, echostr)
    except CallbackError as exc:
        return _refuse(exc.status, str(exc))
    # WeCom wants the bare plaintext: no quotes, no BOM, no newline.
    return Response(plain, mimetype="text/plain")


@bp.post("/wecom/callback")
def receive() -> Response:
    cap = settings().callback_max_bytes
    if request.content_length is not None and request.content_length > cap:
        return _refuse(413, f"body over {cap} bytes")
    body = request.stream.read(cap + 1)
    if len(body) > cap:
        return _refuse(413, f"body over {cap} bytes")
    signature, timestamp, nonce = _query()
    if not (signature and timestamp and nonce):
        return _refuse(403, "msg_signature, timestamp and nonce are required")
    try:
        plaintext = callback_crypto().decrypt(body, signature, timestamp, nonce)
        event = parse_event(plaintext)
    except CallbackError as exc:
        return _refuse(exc.status, str(exc))
    urgent = isinstance(event, ExternalContactEvent) and bool(event.welcome_code)
    incoming = IncomingEvent(
        dedupe_key=hashlib.sha256(plaintext.encode()).hexdigest(),
        kind=event.kind[:80],
        create_time=event.create_time,
        plaintext=plaintext,
        urgent=urgent,
    )
    try:
        new = _inbox().store(incoming)
    except InboxUnavailable as exc:
        CALLBACKS.labels(incoming.kind, "unavailable").inc()
        log.error("callback %s not stored: %s", event.kind, exc)
        return Response("storage unavailable, please retry\n", status=503, mimetype="text/plain")
    CALLBACKS.labels(incoming.kind, "stored" if new else "duplicate").inc()
    if not new:
        log.info("re-delivery of a %s callback acknowledged", event.kind)
    return Response("", status=200)
