"""Library items as WeCom messages: the JS-SDK's ``sendChatMessage`` arguments for the chat sidebar, and the
attachments of welcome messages.

A kept file gets its WeCom media id when it is first sent (``sends.media.media_id``: media/upload, WeCom doc
90253), reused for 2.5 of the 3 days it lives and uploaded again after that, or at once with ``fresh`` when
WeCom (or the member's client) said it is no longer valid (40007).

Welcome messages are sent within the 20 seconds a welcome code lives, from threads without a database
session, so their attachments are kept in WeCom's form, media ids included: an entry made from a library
item carries ``library_item_id`` and is rebuilt from the item when it changes (``refresh_welcomes``) and,
by the periodic ``refresh_library_media``, before its media id runs out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot.extensions import db
from bot.models import Channel, ItemKind, LibraryItem, MediaFile, User, WelcomeMessage
from bot.services.channels.welcome import LIBRARY_ITEM_KEY
from bot.services.clients import contact_api
from bot.services.errors import translates_wecom_errors
from bot.services.library.errors import LibraryError
from bot.services.radar.links import TRACKED_KEY
from bot.services.sends import media
from bot.services.users.accounts import N_
from bot.services.users.scope import library_item_condition
from bot.wecom import WeComClient
from bot.wecom.errors import WeComError

log = logging.getLogger(__name__)

#: the key marking a welcome attachment made from a library item (stripped before WeCom sees it)
ITEM_KEY = LIBRARY_ITEM_KEY
MAX_ID = 2**31 - 1


def _media_id(file: MediaFile | None, api: WeComClient, fresh: bool) -> str:
    if file is None:  # an item is checked to have its file when it is saved; this is a broken row
        raise LibraryError("item_id", N_("素材缺少文件"))
    return media.media_id(file, api, fresh=fresh)


@translates_wecom_errors
def chat_message(
    item: LibraryItem,
    api: WeComClient,
    *,
    cover_url: Callable[[MediaFile], str] | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """The arguments of the JS-SDK's ``sendChatMessage`` for ``item`` (WeCom doc 98539 / 96935): text; image,
    video and file by ``mediaid`` (the JS key; the server API's is ``media_id``); a link as ``news``; a mini
    program. Covers go by ``imgUrl``: an absolute URL, by default where Siyu serves them
    (``sends.media.public_url``, under SIYU_PUBLIC_URL). ``fresh``: upload the file again (the client said the
    media id was not valid). Flushes an upload; WeCom's refusal is a ``WeComRefused``."""
    url = cover_url or media.public_url
    kind = ItemKind(item.kind)
    if kind == ItemKind.text:
        return {"msgtype": "text", "text": {"content": item.text}}
    if kind in (ItemKind.image, ItemKind.video, ItemKind.file):
        return {"msgtype": kind.value, kind.value: {"mediaid": _media_id(item.file, api, fresh)}}
    if kind == ItemKind.link:
        news = {"link": item.url, "title": item.title, "desc": item.description}
        return {"msgtype": "news", "news": {**news, "imgUrl": url(item.cover) if item.cover else ""}}
    if item.cover is None:
        raise LibraryError("item_id", N_("素材缺少文件"))
    mini = {"appid": item.appid, "title": item.title, "imgUrl": url(item.cover), "page": item.page}
    return {"msgtype": "miniprogram", "miniprogram": mini}


def wecom_attachment(item: LibraryItem, api: WeComClient, *, fresh: bool = False) -> dict[str, Any]:
    """``item`` as an attachment of a welcome message in WeCom's form (WeCom doc 92599), marked as the item's."""
    kind = ItemKind(item.kind)
    marker = {ITEM_KEY: item.id}
    if kind in (ItemKind.image, ItemKind.video, ItemKind.file):
        return {"msgtype": kind.value, kind.value: {"media_id": _media_id(item.file, api, fresh)}, **marker}
    if kind == ItemKind.link:
        link = {"title": item.title, "url": item.url}
        if item.description:
            link["desc"] = item.description
        if item.cover is not None:
            link["picurl"] = media.public_url(item.cover)
        tracked = {TRACKED_KEY: True} if item.tracked else {}  # made each customer's link when sent
        return {"msgtype": "link", "link": link, **marker, **tracked}
    if kind == ItemKind.miniprogram:
        pic = _media_id(item.cover, api, fresh)
        mini = {"title": item.title, "pic_media_id": pic, "appid": item.appid, "page": item.page}
        return {"msgtype": "miniprogram", "miniprogram": mini, **marker}
    raise LibraryError("attachments", N_("文字素材不能作为附件，请写在欢迎语里"))


def _visible_item(raw: Any, user: User) -> LibraryItem:
    item: LibraryItem | None = None
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw <= MAX_ID:
        visible = (LibraryItem.id == raw, LibraryItem.archived.is_(False), library_item_condition(user))
        item = db.session.scalar(select(LibraryItem).where(*visible))
    if item is None:
        raise LibraryError("welcome", N_("附件：素材不存在、已归档或不能作为附件"))
    return item


@translates_wecom_errors
def welcome_attachments(welcomes: list[dict[str, Any]], user: User) -> list[dict[str, Any]]:
    """The welcome variants as the channel services take them, their attachments naming library items
    (``{"library_item_id": N}``) made WeCom's, media uploaded (or reused). Items must be ones ``user`` may
    see; an entry already made from an item (a variant kept as it was) is rebuilt from it. Flushes uploads."""
    api: WeComClient | None = None
    out = []
    for variant in welcomes:
        attachments = variant.get("attachments")
        if isinstance(attachments, list):
            made: list[Any] = []
            for a in attachments:
                if isinstance(a, dict) and ITEM_KEY in a:
                    api = api or contact_api()
                    a = wecom_attachment(_visible_item(a.get(ITEM_KEY), user), api)
                made.append(a)
            variant = {**variant, "attachments": made}
        out.append(variant)
    return out


def _item_id(attachment: object) -> int | None:
    """The library item a welcome attachment was made from (None: one given in WeCom's form)."""
    if isinstance(attachment, dict) and isinstance(attachment.get(ITEM_KEY), int):
        return int(attachment[ITEM_KEY])
    return None


def item_ids(variant: WelcomeMessage) -> list[int]:
    """The library items a welcome variant attaches."""
    return [i for a in variant.attachments or [] if (i := _item_id(a)) is not None]


def refresh_welcomes(ids: list[int] | None = None, api: WeComClient | None = None) -> int:
    """Rebuild the welcome attachments made from library items (those of ``ids``, or all): an item changed
    is followed, an archived or deleted one dropped, and media ids older than 2.5 days uploaded again.
    Returns the variants changed. Flushes."""
    wanted = set(ids) if ids is not None else None
    variants = db.session.scalars(
        select(WelcomeMessage).join(Channel, Channel.id == WelcomeMessage.channel_id).where(Channel.active)
    )
    changed = 0
    for variant in variants:
        used = set(item_ids(variant))
        if not used or (wanted is not None and not used & wanted):
            continue
        api = api or contact_api()
        items = {i.id: i for i in db.session.scalars(select(LibraryItem).where(LibraryItem.id.in_(used)))}
        rebuilt: list[dict[str, object]] = []
        for a in variant.attachments:
            item_id = _item_id(a)
            item = items.get(item_id) if item_id is not None else None
            if item_id is None:
                rebuilt.append(a)
            elif item is None:
                continue  # deleted
            elif not item.archived and item.kind != ItemKind.text:
                try:
                    rebuilt.append(wecom_attachment(item, api))
                except WeComError as exc:  # kept as it was; the next refresh tries again
                    log.warning("welcome %s: library item %s not refreshed: %s", variant.id, item.id, exc)
                    rebuilt.append(a)
        if rebuilt != variant.attachments:
            variant.attachments = rebuilt
            changed += 1
    db.session.flush()
    return changed
