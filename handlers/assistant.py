"""Messages members send to the app (the assistant)."""

from __future__ import annotations

from bot.services.assistant import commands as assistant
from bot.services.callbacks.processing import Handler
from bot.wecom.events import AppTextMessage, Event


def on_app_text(event: Event) -> str | None:
    assert isinstance(event, AppTextMessage)
    return assistant.reply(event.from_user, event.content, event.msg_id)


HANDLERS: dict[str, Handler] = {
    "text": on_app_text,
}
