"""The webhook tests' receivers (real HTTP servers on loopback) and endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bot.extensions import db, redis_conn
from bot.sandbox import serve_in_thread
from bot.sandbox.receiver import WebhookReceiver
from bot.services.webhooks import endpoints
from bot.services.webhooks.events import SUBSCRIBABLE


@contextmanager
def receiving(**kwargs: object) -> Iterator[WebhookReceiver]:
    """A receiver served on loopback; its ``url`` is where it listens."""
    receiver = WebhookReceiver(**kwargs)  # type: ignore[arg-type]
    server = serve_in_thread(receiver)
    receiver.url = f"http://127.0.0.1:{server.server_port}/siyu-events"  # type: ignore[attr-defined]
    try:
        yield receiver
    finally:
        server.shutdown()


def register(app, receiver, types=SUBSCRIBABLE, alert_userids=()):
    """An endpoint for ``receiver`` wanting ``types``; the receiver verifies with its secret."""
    with app.app_context():
        endpoint = endpoints.create_endpoint(
            receiver.url, "CRM", list(types), alert_userids=list(alert_userids), actor=None
        )
        db.session.commit()
        receiver.secrets = [endpoint.secret]
        return endpoint.id


def unpause(app):
    """Pauses are Redis keys with a real TTL: a test that moves time forward lifts them by hand."""
    with app.app_context():
        client = redis_conn.client
        for key in client.keys("siyu:webhooks:*"):
            client.delete(key)
