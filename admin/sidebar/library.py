"""The sidebar's content: search the library and the quick replies, preview, and send into the chat in front
of the member (the page asks Siyu for ``sendChatMessage``'s arguments, the client sends, the page reports the
send). Every id goes through the member policy: their customer or group, an item or reply they may send."""

from __future__ import annotations

from typing import Any

from flask import jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue

from admin.sidebar import bp
from admin.sidebar.pages import JSON_ENDPOINTS, member
from bot.extensions import db
from bot.services.errors import Invalid
from bot.services.sends.media import public_url
from bot.services.users.accounts import N_
from bot.services.workspace import content

KINDS = ("text", "image", "link", "miniprogram", "file", "video")
JSON_ENDPOINTS.update({"sidebar.item_message", "sidebar.item_sent", "sidebar.reply_message", "sidebar.reply_sent"})


def _chat() -> dict[str, Any]:
    """The chat a send is for, from the page's JSON: ``external_userid`` or ``chat_id``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Invalid(N_("请求应为 JSON 对象"), "body")
    chat = {"external_userid": body.get("external_userid"), "chat_id": body.get("chat_id")}
    if not all(v is None or isinstance(v, str) and len(v) <= 64 for v in chat.values()):
        raise Invalid(N_("请在与客户或客户群的聊天中发送"), "external_userid")
    return chat


@bp.get("/library")
def library() -> ResponseReturnValue:
    staff = member()
    external_userid = request.args.get("external_userid") or None
    chat_id = request.args.get("chat_id") or None
    customer, chat = content.chat_of(staff, external_userid, chat_id)
    query = request.args.get("q", "").strip()[:64]
    kind = request.args.get("kind") if request.args.get("kind") in KINDS else None
    items, replies = content.search(staff, customer, query, kind)
    return render_template(
        "sidebar/library.html",
        items=items,
        replies=replies,
        query=query,
        kind=kind,
        kinds=KINDS,
        customer=customer,
        chat_id=chat,
        image_url=public_url,
    )


@bp.post("/items/<int:item_id>/message")
def item_message(item_id: int) -> ResponseReturnValue:
    body = request.get_json(silent=True) or {}
    message = content.item_message(member(), item_id, **_chat(), fresh=bool(body.get("fresh")))
    db.session.commit()  # a media id just obtained is kept for the next send
    return jsonify(message=message, record=url_for("sidebar.item_sent", item_id=item_id))


@bp.post("/items/<int:item_id>/sent")
def item_sent(item_id: int) -> ResponseReturnValue:
    send = content.record(member(), item_id=item_id, **_chat())
    db.session.commit()
    return jsonify(id=send.id), 201


@bp.post("/replies/<int:reply_id>/message")
def reply_message(reply_id: int) -> ResponseReturnValue:
    message = content.reply_message(member(), reply_id, **_chat())
    return jsonify(message=message, record=url_for("sidebar.reply_sent", reply_id=reply_id))


@bp.post("/replies/<int:reply_id>/sent")
def reply_sent(reply_id: int) -> ResponseReturnValue:
    send = content.record(member(), reply_id=reply_id, **_chat())
    db.session.commit()
    return jsonify(id=send.id), 201
