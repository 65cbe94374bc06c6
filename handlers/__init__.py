"""Inbound WeCom callbacks: the webhook, and one module per event family.

Handlers translate a parsed event into one service call. They run in the worker (never inside the
5-second callback window), never sleep and never call WeCom themselves.
"""

from __future__ import annotations

from flask import Flask

from bot.services.callbacks.jobs import READS, ROUTER
from bot.services.callbacks.processing import Handler
from bot.services.callbacks.readahead import Read
from bot.wecom.events import Event
from handlers import assistant, contacts, directory, groups, tags
from handlers.webhook import bp

HANDLERS: dict[str, Handler] = {
    **assistant.HANDLERS,
    **contacts.HANDLERS,
    **directory.HANDLERS,
    **groups.HANDLERS,
    **tags.HANDLERS,
}


def route(event: Event) -> Handler | None:
    """The handler for ``event``; None for types Siyu stores but does not act on (yet)."""
    return HANDLERS.get(event.kind)


def reads(event: Event) -> list[Read]:
    """The WeCom reads handling ``event`` will make, to be made ahead for its batch."""
    reads_of = contacts.READS.get(event.kind)
    return reads_of(event) if reads_of else []


def init_handlers(app: Flask) -> None:
    """The webhook's routes, and the router the worker's event processing asks for each event's handler."""
    app.register_blueprint(bp)
    app.extensions[ROUTER] = route
    app.extensions[READS] = reads
