"""Attachment files and their WeCom media ids (WeCom doc 90253).

A media id lives 3 days. Siyu keeps the file, reuses its id for 2.5 days and uploads it again after
that, or at once when WeCom answers 40007 (invalid media id) for it.

Each user may keep ``DAILY_BYTES`` of files in any 24 hours, counted from the files they kept (``MediaFile``
rows: exact bytes, the same for the API and the panel, nothing to lose when Redis is flushed).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from bot.extensions import db
from bot.models import MediaFile, User
from bot.models._time import utcnow
from bot.services.clients import settings
from bot.services.errors import Invalid, TooMany
from bot.services.users.accounts import N_
from bot.wecom import WeComClient

REUSE_FOR = timedelta(days=2.5)
#: WeCom's limits per kind (bytes); every file must be larger than 5 bytes
MAX_BYTES = {"image": 10 * 1024 * 1024, "video": 10 * 1024 * 1024, "file": 20 * 1024 * 1024}
MIMETYPES = {"image": "image/png", "video": "video/mp4", "file": "application/octet-stream"}
#: what one user may keep in any 24 hours (bytes): ten of the largest files
DAILY_BYTES = 200 * 1024 * 1024
QUOTA_WINDOW = timedelta(days=1)
#: where Siyu serves images publicly (a link's cover, a mini program's: WeCom clients fetch them by URL)
PUBLIC_PREFIX = "media/"
#: hex digits of the content's sha256 in a public name: 128 bits, so that no name can be guessed
PUBLIC_KEY_LENGTH = 32


class MediaError(Invalid):
    """An attachment file Siyu refuses (kind, size), in words for the person uploading it."""


class MediaQuotaExceeded(MediaError, TooMany):
    """The user has kept ``DAILY_BYTES`` of files in the last 24 hours (a 429 naming the limit)."""


def _check_quota(user: User, size: int) -> None:
    """Refuse a file that would take ``user`` beyond ``DAILY_BYTES`` kept in the last 24 hours."""
    kept = db.session.scalar(
        select(func.coalesce(func.sum(MediaFile.size), 0)).where(
            MediaFile.created_by == user.id, MediaFile.created_at > utcnow() - QUOTA_WINDOW
        )
    )
    if int(kept or 0) + size > DAILY_BYTES:
        raise MediaQuotaExceeded(
            N_("每位用户 24 小时内最多上传 %(mb)s MB 附件，请稍后再试"), "file", mb=f"{DAILY_BYTES / 1024 / 1024:g}"
        )


def _sniff(kind: str, content: bytes) -> str:
    """The mimetype WeCom will accept for ``content`` of ``kind``, or a MediaError."""
    if kind == "image":
        if content.startswith(b"\x89PNG\r\n\x1a\n"):
            return "image/png"
        if content.startswith(b"\xff\xd8\xff"):
            return "image/jpeg"
        raise MediaError(N_("图片只能是 JPG 或 PNG"))
    if kind == "video":
        if content[4:8] != b"ftyp":
            raise MediaError(N_("视频只能是 MP4"))
        return "video/mp4"
    return MIMETYPES[kind]


def save_file(kind: str, filename: str, content: bytes, user: User | None) -> MediaFile:
    """Keep an uploaded attachment, checked against WeCom's limits for its kind and the user's daily quota.
    Flushes."""
    if kind not in MAX_BYTES:
        raise MediaError(N_("附件类型只能是图片、视频或文件"))
    if not 5 < len(content) <= MAX_BYTES[kind]:
        raise MediaError(N_("文件大小超出企业微信的限制"))
    _sniff(kind, content)
    if user is not None:
        _check_quota(user, len(content))
    name = (filename or "attachment").replace("\x00", "")[-128:]
    media = MediaFile(
        kind=kind,
        filename=name,
        content=content,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        created_by=user.id if user else None,
    )
    db.session.add(media)
    db.session.flush()
    return media


def media_id(media: MediaFile, api: WeComClient, *, fresh: bool = False) -> str:
    """The file's WeCom media id, uploaded now when it has none, when it is older than 2.5 days, or when
    ``fresh`` (WeCom refused the one it had). Flushes."""
    now = utcnow()
    if fresh or media.media_id is None or media.uploaded_at is None or now - media.uploaded_at > REUSE_FOR:
        media.media_id = api.upload_media(media.kind, media.filename, media.content, _sniff(media.kind, media.content))
        media.uploaded_at = now
        db.session.flush()
    return media.media_id


def describe(media: MediaFile) -> dict[str, Any]:
    return {"id": media.id, "kind": media.kind, "filename": media.filename, "size": media.size}


def public_name(media: MediaFile) -> str:
    """The file's name under ``PUBLIC_PREFIX``: its id and the start of its content's hash (which nobody
    without the file can guess), so the URL stays the same for as long as the file does."""
    extension = "jpg" if media.content[:3] == b"\xff\xd8\xff" else "png"
    return f"{media.id}-{media.sha256[:PUBLIC_KEY_LENGTH]}.{extension}"


def public_url(media: MediaFile) -> str:
    """The absolute URL of the image (SIYU_PUBLIC_URL), for WeCom's picurl and the JS-SDK's imgUrl."""
    return settings().public_url + PUBLIC_PREFIX + public_name(media)


def by_public_name(name: str) -> MediaFile | None:
    """The image a public name names, or None (an unknown id, a wrong key, not an image)."""
    stem, _, _extension = name.partition(".")
    number, _, key = stem.partition("-")
    if not number.isdigit() or len(key) != PUBLIC_KEY_LENGTH or int(number) > 2**31 - 1:
        return None
    media = db.session.get(MediaFile, int(number))
    if media is None or media.kind != "image" or not hmac.compare_digest(media.sha256[:PUBLIC_KEY_LENGTH], key):
        return None
    return media


def mimetype(media: MediaFile) -> str:
    """The type to serve the file as (checked by content when it was kept)."""
    return _sniff(media.kind, media.content)
