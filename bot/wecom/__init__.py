"""The WeCom layer: crypto, event parsing, the API client, errors and call budgets.

A library: it imports neither Flask nor SQLAlchemy and is configured through its constructors.
"""

from bot.wecom.client import WeComClient
from bot.wecom.crypto import CallbackCrypto
from bot.wecom.events import Event, parse_event

__all__ = ["CallbackCrypto", "Event", "WeComClient", "parse_event"]
