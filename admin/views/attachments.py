"""What the welcome, mass-send and lifecycle forms attach: items of the content library (one item serves every
channel), and an image uploaded in the form, kept as a library item of its own."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import FileStorage
from wtforms.fields.choices import SelectChoice

from admin.forms import ITEM_KINDS
from bot.extensions import db
from bot.models import ItemKind, LibraryItem, User
from bot.services.library import items
from bot.services.sends import media

#: the most recent items a picker lists (the library page searches them all)
PICKER_SIZE = 300


def attachable(user: User) -> list[LibraryItem]:
    """The items ``user`` may attach: not text (that is the message's text), not archived, newest first."""
    stmt = items.visible_items(user).where(LibraryItem.kind != ItemKind.text).limit(PICKER_SIZE)
    return list(db.session.scalars(stmt))


def choices(user: User) -> list[SelectChoice]:
    return [SelectChoice(i.id, f"[{ITEM_KINDS[i.kind]}] {i.title}") for i in attachable(user)]


def uploaded_image(file: Any, user: User) -> LibraryItem | None:
    """The image uploaded in a form, kept as a library item (checked by content and size, counted in the
    user's daily quota); None when no file was chosen."""
    if not isinstance(file, FileStorage) or not file.filename:
        return None
    return items.item_from_upload("image", file.filename, file.read(media.MAX_BYTES["image"] + 1), user)
