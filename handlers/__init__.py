"""Inbound WeCom callbacks: the webhook, and one module per event family.

Handlers translate a parsed event into one service call. They run in the worker (never inside the
5-second callback window), never sleep and never call WeCom themselves.
"""

from __future__ import annotations

from flask import Flask

from bot.services.events import Handler
from bot.wecom.events import Event
from handlers import assistant, contacts, groups, tags

HANDLERS: dict[str, Handler] = {
    **assistant.HANDLERS,
    **contacts.HANDLERS,
    **groups.HANDLERS,
    **tags.HANDLERS,
}


def route(event: Event) -> Handler | None:
    """The handler for ``event``; None for types Siyu stores but does not act on (yet)."""
    return HANDLERS.get(event.kind)


def init_handlers(app: Flask) -> None:
    from handlers.webhook import bp

    app.register_blueprint(bp)
