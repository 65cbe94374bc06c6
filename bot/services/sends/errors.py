"""The refusal of the mass-send services, shared by composing a send and resolving its recipients."""

from __future__ import annotations

from bot.services.errors import Conflict, Invalid


class SendError(Invalid):
    """A send Siyu refuses, in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class SendConflict(SendError, Conflict):
    """What the send's state refuses (editing an approved send, cancelling a finished one)."""
