"""/media/<name>: the images of library items (a link's or a mini program's cover, an image item), public
because WeCom clients fetch them by URL with no session (the JS-SDK's imgUrl, a link attachment's picurl).
A name carries the start of the file's content hash (``sends.media.public_name``), so none can be guessed;
a file kept for anything but a library item is never served here."""

from __future__ import annotations

import io

from flask import Blueprint, abort, send_file
from flask.typing import ResponseReturnValue
from sqlalchemy import or_, select

from bot.extensions import db
from bot.models import LibraryItem
from bot.services.sends import media

bp = Blueprint("media", __name__)


@bp.get("/" + media.PUBLIC_PREFIX + "<name>")
def public_image(name: str) -> ResponseReturnValue:
    kept = media.by_public_name(name)
    if kept is None:
        abort(404)
    used = select(LibraryItem.id).where(or_(LibraryItem.file_id == kept.id, LibraryItem.cover_id == kept.id))
    if db.session.scalar(used.limit(1)) is None:
        abort(404)
    response = send_file(io.BytesIO(kept.content), mimetype=media.mimetype(kept), download_name=name)
    # The name changes with the content: what was fetched never changes.
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
