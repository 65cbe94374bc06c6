"""The refusal of the mass-send services, shared by composing a send and resolving its recipients."""

from __future__ import annotations

from bot.services.errors import Conflict, Forbidden, Invalid


class SendError(Invalid):
    """A send Siyu refuses, in words for the field it concerns."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class SendConflict(SendError, Conflict):
    """What the send's state refuses (editing an approved send, cancelling a finished one)."""


class SendForbidden(SendError, Forbidden):
    """What the user may not put into a send (another user's uploaded file)."""
